-- The name of the tenant a role acts for, or NULL (authorize_outbox_v1's test); NULL too when this session
-- may not ask about that role (may_act_as_v1).
CREATE OR REPLACE FUNCTION fairlane.role_tenant_v1(role name) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT t.name FROM fairlane.tenant_roles tr JOIN fairlane.tenants t ON t.id = tr.tenant_id
    WHERE tr.role_name = role AND fairlane.may_act_as_v1(role)
$$;
