"""API: fair portions in PL/pgSQL (queue_portions_v2), submission as one function with per-row results
(accept_v2), the message_details view, cancel, and the status callbacks table filled by a trigger on
message_events.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from alembic import op

from db.schema import execute_sql, frozen

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SCHEMA = r"""
-- A gateway may require its delivery receipts to carry a bearer token.
ALTER TABLE fairlane.gateways ADD COLUMN receipts_token text
    CONSTRAINT gateways_receipts_token_check CHECK (length(receipts_token) BETWEEN 16 AND 256);
-- One row per status change to be POSTed to a status_callback URL; small rows, updated on each attempt.
CREATE TABLE fairlane.callbacks (
    event_id bigint PRIMARY KEY,
    tenant_id bigint NOT NULL,
    url text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz,
    abandoned_at timestamptz,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 80);
CREATE INDEX callbacks_due_idx ON fairlane.callbacks (next_attempt_at)
    WHERE delivered_at IS NULL AND abandoned_at IS NULL;
"""

TRIGGERS = r"""
DROP TRIGGER outbox_2_accept ON fairlane.outbox;
CREATE TRIGGER outbox_2_accept AFTER INSERT ON fairlane.outbox
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION fairlane.accept_outbox_v2();
CREATE TRIGGER message_events_callbacks AFTER INSERT ON fairlane.message_events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION fairlane.events_callbacks_v1();
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA fairlane FROM PUBLIC;
"""


def upgrade() -> None:
    connection = op.get_bind()
    execute_sql(connection, SCHEMA)
    for path in (
        "functions/portions_v2.sql",
        "functions/accept_v2.sql",
        "views/message_details_v1.sql",
        "functions/api_v1.sql",
        "functions/callbacks_v1.sql",
    ):
        execute_sql(connection, frozen(revision, path))
    execute_sql(connection, TRIGGERS)


def downgrade() -> None:
    connection = op.get_bind()
    execute_sql(
        connection,
        r"""
        DROP TRIGGER message_events_callbacks ON fairlane.message_events;
        DROP TRIGGER outbox_2_accept ON fairlane.outbox;
        CREATE TRIGGER outbox_2_accept AFTER INSERT ON fairlane.outbox
            REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION fairlane.accept_outbox_v1();
        DROP FUNCTION fairlane.events_callbacks_v1();
        DROP FUNCTION fairlane.cancel_v1(bigint, bigint);
        DROP FUNCTION fairlane.submit_json_v1(jsonb);
        DROP TYPE fairlane.accepted_v1;
        DROP VIEW fairlane.message_details;
        DROP FUNCTION fairlane.accept_outbox_v2();
        DROP FUNCTION fairlane.accept_v2(fairlane.submission_v1[], boolean);
        DROP TYPE fairlane.staged_message_v2;
        DROP TYPE fairlane.row_error_v2;
        DROP TYPE fairlane.submission_v1;
        DROP FUNCTION fairlane.queue_portions_v2(bigint[], bigint[]);
        DROP TABLE fairlane.callbacks;
        ALTER TABLE fairlane.gateways DROP COLUMN receipts_token;
        """,
    )
