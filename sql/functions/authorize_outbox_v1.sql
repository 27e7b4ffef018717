-- Statement trigger on fairlane.outbox, run as the inserting role (before the accepting trigger, which runs
-- as the owner): a tenant role may insert only rows of its own tenant. COPY cannot go through row-level
-- security, so this check stands in for an RLS policy on the outbox.
CREATE OR REPLACE FUNCTION fairlane.authorize_outbox_v1() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    own text;
    other text;
BEGIN
    IF NOT pg_has_role(current_user, 'fairlane_tenant', 'MEMBER')
       OR (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user) THEN
        RETURN NULL;
    END IF;
    own := fairlane.role_tenant_v1(current_user);
    SELECT n.tenant INTO other FROM new_rows n WHERE n.tenant IS DISTINCT FROM own LIMIT 1;
    IF FOUND THEN
        PERFORM fairlane.raise_v1('forbidden', 'tenant', other,
            format('role %s may only submit messages of tenant %s', quote_ident(current_user),
                   coalesce(quote_literal(own), '(none)')));
    END IF;
    RETURN NULL;
END
$$;
