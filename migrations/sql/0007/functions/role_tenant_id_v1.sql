-- The tenant a role acts for (fairlane.tenant_roles), or NULL: the test of the row-level security
-- policies on messages and message_events (security.sql). NULL too when this session may not ask about
-- that role (may_act_as_v1).
CREATE OR REPLACE FUNCTION fairlane.role_tenant_id_v1(role name) RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT tr.tenant_id FROM fairlane.tenant_roles tr WHERE tr.role_name = role AND fairlane.may_act_as_v1(role)
$$;
