"""Tenant-safe edges (issue 13, docs/decisions/0017): status callback URLs must be public https URLs unless the
operator allows more (settings.callback_allow_networks, callback_allow_http; callback_url_problem_v1 checks them
at submission and on tenants, non_public_networks_v1 is the list of what is not public); every gateway has a
receipts token (one is made up for those without: nobody knows it, so after the upgrade the operator sets each
gateway's token to what its carrier sends, or rotates it and gives the carrier the new one; README "Upgrading");
a per-tenant cap on scheduled messages (settings.scheduled_per_tenant, counted in tenants.scheduled_count, which
accept_v2, promote_v1, cancel_v1 and expire_v1 keep; filled from the scheduled messages there are) and admission
at promotion (promote_v1 fails a due message that would overflow its queue with queue_overflow); signing secrets
rotate with a grace period (tenants.previous_signing_secret, previous_signing_secret_until); the callback
sender's claim takes tenants in turn (callbacks_tenant_due_idx instead of callbacks_due_idx); a tenant's list by
status or destination reads an index per queue and status (messages_finished_queue_id_status_idx,
messages_scheduled_tenant_idx, messages_sending_tenant_idx); the role functions answer a tenant's session only
about roles it can act as (may_act_as_v1).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from alembic import op

from db.schema import execute_sql, frozen, or_replace, read_function

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

NEW_TOKEN = "'rt_' || replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '')"

TABLES = rf"""
ALTER TABLE fairlane.tenants ADD COLUMN previous_signing_secret text,
    ADD COLUMN previous_signing_secret_until timestamptz,
    ADD COLUMN scheduled_count integer NOT NULL DEFAULT 0
        CONSTRAINT tenants_scheduled_count_check CHECK (scheduled_count >= 0);
UPDATE fairlane.tenants t SET scheduled_count = c.messages
FROM (SELECT m.tenant_id, count(*) AS messages FROM fairlane.messages_live m WHERE m.status = 'scheduled'
      GROUP BY m.tenant_id) c
WHERE t.id = c.tenant_id;
UPDATE fairlane.gateways SET receipts_token = {NEW_TOKEN} WHERE receipts_token IS NULL;
ALTER TABLE fairlane.gateways ALTER COLUMN receipts_token SET DEFAULT {NEW_TOKEN},
    ALTER COLUMN receipts_token SET NOT NULL;
CREATE INDEX messages_scheduled_tenant_idx ON fairlane.messages_live (tenant_id, id) WHERE status = 'scheduled';
CREATE INDEX messages_sending_tenant_idx ON fairlane.messages_live (tenant_id, id) WHERE status = 'sending';
CREATE INDEX messages_finished_queue_id_status_idx ON fairlane.messages_finished (queue_id, status, id);
ALTER TABLE fairlane.settings ADD COLUMN callback_allow_networks cidr[] NOT NULL DEFAULT '{{}}',
    ADD COLUMN callback_allow_http boolean NOT NULL DEFAULT false,
    ADD COLUMN scheduled_per_tenant integer NOT NULL DEFAULT 100000
        CONSTRAINT settings_scheduled_per_tenant_check CHECK (scheduled_per_tenant BETWEEN 1 AND 100000000);
DROP INDEX fairlane.callbacks_due_idx;
CREATE INDEX callbacks_tenant_due_idx ON fairlane.callbacks (tenant_id, next_attempt_at)
    WHERE delivered_at IS NULL AND abandoned_at IS NULL;
"""

# new functions first (the SQL-language role functions name may_act_as_v1 and are checked when created)
FUNCTIONS = (
    "functions/may_act_as_v1.sql",
    "functions/non_public_networks_v1.sql",
    "functions/callback_url_problem_v1.sql",
    "functions/check_tenant_callback_v1.sql",
    "functions/role_tenant_v1.sql",
    "functions/role_tenant_id_v1.sql",
    "functions/viewer_tenant_v1.sql",
    "functions/raise_v1.sql",
    "functions/accept_v2.sql",
    "functions/promote_v1.sql",
    "functions/cancel_v1.sql",
    "functions/expire_v1.sql",
)

TRIGGERS_AND_SECURITY = r"""
CREATE TRIGGER tenants_status_callback BEFORE INSERT OR UPDATE OF status_callback ON fairlane.tenants
    FOR EACH ROW EXECUTE FUNCTION fairlane.check_tenant_callback_v1();
REVOKE ALL ON FUNCTION fairlane.may_act_as_v1(name), fairlane.non_public_networks_v1(),
    fairlane.callback_url_problem_v1(text), fairlane.check_tenant_callback_v1() FROM PUBLIC;
"""


def upgrade() -> None:
    connection = op.get_bind()
    execute_sql(connection, TABLES)
    for path in FUNCTIONS:
        execute_sql(connection, frozen(revision, path))
    execute_sql(connection, TRIGGERS_AND_SECURITY)


# --- downgrade: the 0006 functions again, the new objects and columns gone ---------------------------------

OLD_FUNCTIONS = (
    ("0001", "functions/roles_v1.sql", ("role_tenant_v1", "role_tenant_id_v1")),
    ("0001", "functions/errors_v1.sql", ("raise_v1",)),
)
OLD_FILES = (
    ("0006", "functions/viewer_tenant_v1.sql"),
    ("0006", "functions/accept_v2.sql"),
    ("0006", "functions/promote_v1.sql"),
    ("0006", "functions/cancel_v1.sql"),
    ("0006", "functions/expire_v1.sql"),
)

DROP_NEW = r"""
DROP TRIGGER tenants_status_callback ON fairlane.tenants;
DROP FUNCTION fairlane.check_tenant_callback_v1(), fairlane.callback_url_problem_v1(text),
    fairlane.non_public_networks_v1(), fairlane.may_act_as_v1(name);
DROP INDEX fairlane.callbacks_tenant_due_idx;
CREATE INDEX callbacks_due_idx ON fairlane.callbacks (next_attempt_at)
    WHERE delivered_at IS NULL AND abandoned_at IS NULL;
ALTER TABLE fairlane.settings DROP COLUMN callback_allow_networks, DROP COLUMN callback_allow_http,
    DROP COLUMN scheduled_per_tenant;
DROP INDEX fairlane.messages_finished_queue_id_status_idx, fairlane.messages_scheduled_tenant_idx,
    fairlane.messages_sending_tenant_idx;
ALTER TABLE fairlane.gateways ALTER COLUMN receipts_token DROP NOT NULL, ALTER COLUMN receipts_token DROP DEFAULT;
ALTER TABLE fairlane.tenants DROP COLUMN previous_signing_secret, DROP COLUMN previous_signing_secret_until,
    DROP COLUMN scheduled_count;
"""


def downgrade() -> None:
    connection = op.get_bind()
    for revision_, path, names in OLD_FUNCTIONS:
        for name in names:
            execute_sql(connection, or_replace(read_function(revision_, path, name)))
    for revision_, path in OLD_FILES:
        execute_sql(connection, frozen(revision_, path))
    execute_sql(connection, DROP_NEW)
