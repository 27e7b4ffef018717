"""Quota windows and levels of service (issue 15, docs/decisions/0020). Destinations and senders may carry
per-minute, per-hour and per-day quotas (calendar windows in a reset time zone, or sliding), counted in
`quota_windows` (sync_windows_v1 keeps its rows; window_state_v1, window_counts_v1); messages carry a level of
service (`priority`: high, normal, bulk; the ready index orders a queue by level, then age). fairlane.claim_v4
takes both into account (claim_v3 stays as its wrapper for dispatchers of the previous release); portions leave
out queues whose sender's window is spent (queue_portions_v3, compute_portions_v2, refresh_portions_v2, which
replace compute_portions_v1 and refresh_portions_v1); admission projects drain against the windows
(window_drain_v1, accept_v3 with submission_v2, a high-priority message against the high ones ahead of it:
level_backlog_v1; accept_v2 and submit_json_v1 stay as wrappers, submit_json_v2 and fairlane.submit take
`priority`); the views show levels, binding limits and the windows' use (window_load).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from alembic import op

from db.schema import execute_sql, frozen, or_replace, read_function

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# in dependency order: SQL functions are checked when created
FUNCTIONS = (
    "types/submission_v2.sql",
    "functions/window_state_v1.sql",
    "functions/window_counts_v1.sql",
    "functions/window_drain_v1.sql",
    "functions/sync_windows_v1.sql",
    "functions/queue_portions_v3.sql",
    "functions/queue_portions_v2.sql",
    "functions/compute_portions_v2.sql",
    "functions/refresh_portions_v2.sql",
    "functions/claim_v4.sql",
    "functions/claim_v3.sql",
    "functions/level_backlog_v1.sql",
    "functions/accept_v3.sql",
    "functions/accept_v2.sql",
    "functions/accept_outbox_v2.sql",
    "functions/submit_json_v2.sql",
)

VIEWS = (
    "views/message_details.sql",
    "views/window_load.sql",
    "views/queue_scores.sql",
    "views/queue_state.sql",
    "views/destination_load.sql",
)

UPGRADE = r"""
DROP FUNCTION fairlane.refresh_portions_v1(bigint);
DROP FUNCTION fairlane.compute_portions_v1(bigint);
DROP FUNCTION fairlane.submit(text, text, text, text, text, text, timestamptz, integer, text);
"""

TRIGGERS = r"""
CREATE TRIGGER destinations_windows AFTER INSERT OR UPDATE OF per_minute, per_hour, per_day, reset_timezone, window_kind
    ON fairlane.destinations FOR EACH ROW EXECUTE FUNCTION fairlane.sync_windows_v1();
CREATE TRIGGER senders_windows AFTER INSERT OR UPDATE OF per_minute, per_hour, per_day, reset_timezone, window_kind
    ON fairlane.senders FOR EACH ROW EXECUTE FUNCTION fairlane.sync_windows_v1();
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA fairlane FROM PUBLIC;
GRANT EXECUTE ON FUNCTION fairlane.submit(text, text, text, text, text, text, timestamptz, integer, text, text)
    TO fairlane_tenant;
"""

DOWNGRADE_VIEWS = r"""
DROP TRIGGER destinations_windows ON fairlane.destinations;
DROP TRIGGER senders_windows ON fairlane.senders;
DROP VIEW fairlane.destination_load;
DROP VIEW fairlane.window_load;
DROP VIEW fairlane.queue_scores;
DROP VIEW fairlane.queue_state;
DROP VIEW fairlane.message_details;
"""

DOWNGRADE_DROP = r"""
DROP FUNCTION fairlane.submit(text, text, text, text, text, text, timestamptz, integer, text, text);
DROP FUNCTION fairlane.submit_json_v2(jsonb);
DROP FUNCTION fairlane.accept_v3(fairlane.submission_v2[], boolean);
DROP FUNCTION fairlane.level_backlog_v1(bigint, smallint, bigint);
DROP FUNCTION fairlane.claim_v4(bigint, integer, double precision, timestamptz);
DROP FUNCTION fairlane.refresh_portions_v2(bigint, timestamptz);
DROP FUNCTION fairlane.compute_portions_v2(bigint, bigint[]);
DROP FUNCTION fairlane.queue_portions_v3(bigint[], bigint[], bigint[]);
DROP FUNCTION fairlane.sync_windows_v1();
DROP FUNCTION fairlane.window_drain_v1(bigint, bigint, double precision, double precision, timestamptz);
DROP FUNCTION fairlane.window_counts_v1(text, text, boolean, bigint[], timestamptz, timestamptz, bigint);
DROP FUNCTION fairlane.window_state_v1(text, integer, text, boolean, bigint[], timestamptz, timestamptz, timestamptz);
DROP TYPE fairlane.submission_v2;
ALTER TYPE fairlane.staged_message_v2 DROP ATTRIBUTE priority;
DROP TABLE fairlane.quota_windows;
DROP INDEX fairlane.messages_ready_idx;
CREATE INDEX messages_ready_idx ON fairlane.messages_live (queue_id, id) WHERE status = 'queued';
ALTER TABLE fairlane.messages DROP COLUMN priority;
ALTER TABLE fairlane.queues DROP COLUMN normal_owed, DROP COLUMN bulk_owed;
ALTER TABLE fairlane.settings DROP COLUMN level_minimum_share;
ALTER TABLE fairlane.outbox DROP COLUMN priority;
ALTER TABLE fairlane.destination_state DROP COLUMN portions_until;
ALTER TABLE fairlane.destinations DROP COLUMN per_minute, DROP COLUMN per_hour, DROP COLUMN per_day,
    DROP COLUMN reset_timezone, DROP COLUMN window_kind;
ALTER TABLE fairlane.senders DROP COLUMN per_minute, DROP COLUMN per_hour, DROP COLUMN per_day,
    DROP COLUMN reset_timezone, DROP COLUMN window_kind;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA fairlane FROM PUBLIC;
GRANT EXECUTE ON FUNCTION fairlane.submit(text, text, text, text, text, text, timestamptz, integer, text)
    TO fairlane_tenant;
"""


def upgrade() -> None:
    connection = op.get_bind()
    execute_sql(connection, frozen(revision, "tables/windows_and_levels.sql"))
    for path in FUNCTIONS:
        execute_sql(connection, frozen(revision, path))
    execute_sql(connection, UPGRADE)
    execute_sql(connection, frozen(revision, "functions/submit.sql"))
    for path in VIEWS:
        execute_sql(connection, frozen(revision, path))
    execute_sql(connection, TRIGGERS)


def downgrade() -> None:
    connection = op.get_bind()
    execute_sql(connection, DOWNGRADE_VIEWS)
    for restore in (
        frozen("0006", "views/message_details.sql"),
        frozen("0006", "views/queue_state.sql"),
        frozen("0006", "views/queue_scores.sql"),
        frozen("0004", "views/destination_load_v3.sql"),
        frozen("0008", "functions/claim_v3.sql"),
        frozen("0009", "functions/accept_v2.sql"),
        or_replace(read_function("0003", "functions/accept_v2.sql", "accept_outbox_v2")),
        or_replace(read_function("0003", "functions/portions_v2.sql", "queue_portions_v2")),
        frozen("0005", "functions/compute_portions_v1.sql"),
        read_function("0002", "functions/shares_v1.sql", "refresh_portions_v1"),
        frozen("0005", "functions/submit.sql"),
    ):
        execute_sql(connection, restore)
    execute_sql(connection, DOWNGRADE_DROP)
