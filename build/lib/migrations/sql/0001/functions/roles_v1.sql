-- Tenant-scoped database roles (SPEC §5): members of fairlane_tenant that are mapped to one tenant may
-- insert that tenant's rows into fairlane.outbox, call fairlane.submit for it, and read its own messages
-- and events; row-level security hides every other tenant's rows.

-- The tenant a role acts for, or NULL.
CREATE FUNCTION fairlane.role_tenant_id_v1(role name) RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT tr.tenant_id FROM fairlane.tenant_roles tr WHERE tr.role_name = role
$$;

CREATE FUNCTION fairlane.role_tenant_v1(role name) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT t.name FROM fairlane.tenant_roles tr JOIN fairlane.tenants t ON t.id = tr.tenant_id
    WHERE tr.role_name = role
$$;

-- Give a login role (created when missing, without password) the rights of one tenant. Run by an operator
-- with CREATEROLE. Returns true when anything changed.
CREATE FUNCTION fairlane.grant_tenant_role_v1(tenant text, role name) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    target bigint;
    current bigint;
BEGIN
    SELECT t.id INTO target FROM fairlane.tenants t WHERE t.name = grant_tenant_role_v1.tenant;
    IF target IS NULL THEN
        PERFORM fairlane.raise_v1('not_found', 'tenant', tenant, format('unknown tenant %s', quote_literal(tenant)));
    END IF;
    SELECT tr.tenant_id INTO current FROM fairlane.tenant_roles tr WHERE tr.role_name = role;
    IF current = target THEN
        RETURN false;
    ELSIF current IS NOT NULL THEN
        PERFORM fairlane.raise_v1('invalid_request', 'db_role', role,
            format('role %s already acts for another tenant', quote_ident(role)));
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles r WHERE r.rolname = role) THEN
        EXECUTE format('CREATE ROLE %I LOGIN', role);
    END IF;
    EXECUTE format('GRANT fairlane_tenant TO %I', role);
    INSERT INTO fairlane.tenant_roles (role_name, tenant_id) VALUES (role, target);
    RETURN true;
END
$$;

-- Statement trigger on fairlane.outbox, run as the inserting role (before the accepting trigger, which runs
-- as the owner): a tenant role may insert only rows of its own tenant. COPY cannot go through row-level
-- security, so this check stands in for an RLS policy on the outbox.
CREATE FUNCTION fairlane.authorize_outbox_v1() RETURNS trigger
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
