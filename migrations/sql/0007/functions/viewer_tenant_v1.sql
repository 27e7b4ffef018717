-- Whose rows a role may see through the views that filter by tenant (usage_daily; they pass current_user):
-- NULL for every tenant's (an operator: not a member of fairlane_tenant, or a superuser), else the tenant the
-- role acts for (0, no tenant's, when it acts for none, or when this session may not ask about that role:
-- may_act_as_v1).
CREATE OR REPLACE FUNCTION fairlane.viewer_tenant_v1(role name) RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE
        WHEN NOT fairlane.may_act_as_v1(role) THEN 0
        WHEN NOT pg_has_role(role, 'fairlane_tenant', 'MEMBER')
             OR (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = role) THEN NULL
        ELSE coalesce((SELECT tr.tenant_id FROM fairlane.tenant_roles tr WHERE tr.role_name = role), 0)
    END
$$;
