-- Whether this session may ask which tenant `role` acts for (the role functions below are SECURITY DEFINER
-- and granted to tenant roles): a session of an operator (a role that is not a member of fairlane_tenant, or
-- a superuser) may ask of any role; a tenant's session only of the roles it can act as itself (its own, or
-- one it is a member of), so a tenant role learns nothing of other tenants.
CREATE OR REPLACE FUNCTION fairlane.may_act_as_v1(role name) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT role = session_user
        OR EXISTS (SELECT FROM pg_roles r WHERE r.rolname = role AND pg_has_role(session_user, r.oid, 'MEMBER'))
        OR NOT pg_has_role(session_user, 'fairlane_tenant', 'MEMBER')
$$;
