-- Who may do what (SPEC §5). Functions run only for the owner, except what tenant roles need.
-- Tenant-scoped database roles: members of fairlane_tenant that are mapped to one tenant
-- (fairlane.tenant_roles, grant_tenant_role_v1) may insert that tenant's rows into fairlane.outbox, call
-- fairlane.submit for it, and read its own messages and events; row-level security hides every other
-- tenant's rows. The outbox has no policy: COPY cannot go through row-level security, so the trigger
-- authorize_outbox_v1 checks the rows' tenant instead.

-- The role is cluster-wide: created once, kept when schema fairlane is dropped.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fairlane_tenant') THEN
        CREATE ROLE fairlane_tenant NOLOGIN;
    END IF;
END
$$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA fairlane FROM PUBLIC;
GRANT USAGE ON SCHEMA fairlane TO fairlane_tenant;
GRANT INSERT ON fairlane.outbox TO fairlane_tenant;
GRANT SELECT ON fairlane.messages, fairlane.message_events, fairlane.usage_daily TO fairlane_tenant;
GRANT EXECUTE ON FUNCTION fairlane.submit(text, text, text, text, text, text, timestamptz, integer, text, text)
    TO fairlane_tenant;
GRANT EXECUTE ON FUNCTION fairlane.role_tenant_id_v1(name), fairlane.role_tenant_v1(name),
    fairlane.raise_v1(text, text, text, text, bigint, jsonb), fairlane.authorize_outbox_v1(),
    fairlane.viewer_tenant_v1(name) TO fairlane_tenant;

ALTER TABLE fairlane.messages ENABLE ROW LEVEL SECURITY;
CREATE POLICY messages_own_tenant ON fairlane.messages FOR SELECT TO fairlane_tenant
    USING (tenant_id = (SELECT fairlane.role_tenant_id_v1(current_user)));
ALTER TABLE fairlane.message_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY message_events_own_tenant ON fairlane.message_events FOR SELECT TO fairlane_tenant
    USING (tenant_id = (SELECT fairlane.role_tenant_id_v1(current_user)));
