-- Give a login role (created when missing, without password) the rights of one tenant. Run by an operator
-- with CREATEROLE. Returns true when anything changed.
CREATE OR REPLACE FUNCTION fairlane.grant_tenant_role_v1(tenant text, role name) RETURNS boolean
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
