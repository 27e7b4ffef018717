"""Built to live (docs/decisions/0014): messages and their events split into the live (messages_live,
message_events_live: what the claim path touches) and the finished (messages_finished,
message_events_finished: partitioned by the time a message finished, dropped whole past the retention);
fairlane.finish_v1 moves a message and its events when it finishes. Status callbacks are written with the
events (record_events_v1, with their body) instead of by a trigger; usage that outlives retention
(usage_counters, the usage_daily view); the expiry sweeper (expire_v1), partition upkeep and retention
(make_history_partition_v1, drop_history_partition_v1), bounded pruning (prune_v1); settings (retention).
Every existing message and event is kept: live ones move into the live partitions, finished ones into the
partitions of when they finished.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from alembic import op

from db.schema import execute_sql, frozen, or_replace, read_function

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ASIDE = r"""
DROP TRIGGER message_events_callbacks ON fairlane.message_events;
DROP FUNCTION fairlane.events_callbacks_v1();
ALTER TABLE fairlane.messages RENAME TO messages_0005;
ALTER TABLE fairlane.message_events RENAME TO message_events_0005;
ALTER INDEX fairlane.messages_ready_idx RENAME TO messages_0005_ready_idx;
ALTER INDEX fairlane.messages_scheduled_idx RENAME TO messages_0005_scheduled_idx;
ALTER INDEX fairlane.messages_lease_idx RENAME TO messages_0005_lease_idx;
ALTER SEQUENCE fairlane.messages_id_seq RENAME TO messages_0005_id_seq;
ALTER SEQUENCE fairlane.message_events_id_seq RENAME TO message_events_0005_id_seq;
ALTER TABLE fairlane.callbacks ADD COLUMN payload text;
"""

FUNCTIONS = (
    "types/new_event_v1.sql",
    "functions/record_events_v1.sql",
    "functions/finish_v1.sql",
    "functions/requeue_v1.sql",
    "functions/complete_v1.sql",
    "functions/rescue_v1.sql",
    "functions/promote_v1.sql",
    "functions/receipt_v1.sql",
    "functions/cancel_v1.sql",
    "functions/expire_v1.sql",
    "functions/history_partition_seconds_v1.sql",
    "functions/make_history_partition_v1.sql",
    "functions/drop_history_partition_v1.sql",
    "functions/prune_v1.sql",
    "functions/viewer_tenant_v1.sql",
    "functions/claim_v2.sql",
    "functions/accept_v2.sql",
    "functions/submit_json_v1.sql",
    "views/message_details.sql",
    "views/queue_scores.sql",
    "views/queue_state.sql",
    "views/tenant_usage.sql",
    "views/usage_daily.sql",
)

MOVE_DATA = r"""
SELECT setval('fairlane.messages_id_seq', s.last_value, s.is_called) FROM fairlane.messages_0005_id_seq s;
SELECT setval('fairlane.message_events_id_seq', s.last_value, s.is_called) FROM fairlane.message_events_0005_id_seq s;
-- a finished message finished at its first finishing event (else its last change)
INSERT INTO fairlane.messages (
    id, tenant_id, queue_id, status, recipient, body, segments, encoding, send_at, expires_at, status_callback,
    idempotency_key, attempts, lease_until, provider_id, error_code, error_message, created_at, updated_at,
    available_at, claim_id, finished_at, event_count)
SELECT m.id, m.tenant_id, m.queue_id, m.status, m.recipient, m.body, m.segments, m.encoding, m.send_at, m.expires_at,
       m.status_callback, m.idempotency_key, m.attempts, m.lease_until, m.provider_id, m.error_code, m.error_message,
       m.created_at, m.updated_at, m.available_at, m.claim_id,
       CASE WHEN m.status NOT IN ('scheduled', 'queued', 'sending') THEN coalesce(e.finished_at, m.updated_at) END,
       coalesce(e.events, 0)
FROM fairlane.messages_0005 m
LEFT JOIN (
    SELECT x.message_id, count(*) AS events,
           min(x.at) FILTER (WHERE x.status NOT IN ('scheduled', 'queued', 'sending')) AS finished_at
    FROM fairlane.message_events_0005 x GROUP BY x.message_id
) e ON e.message_id = m.id;
INSERT INTO fairlane.message_events (id, message_id, tenant_id, status, at, detail, finished_at)
SELECT e.id, e.message_id, e.tenant_id, e.status, e.at, e.detail, m.finished_at
FROM fairlane.message_events_0005 e
LEFT JOIN fairlane.messages m ON m.id = e.message_id;
INSERT INTO fairlane.usage_counters (tenant_id, destination_id, sender_id, day, status, slot, messages, segments)
SELECT m.tenant_id, q.destination_id, q.sender_id, (m.finished_at AT TIME ZONE 'UTC')::date, m.status, 0, count(*),
       sum(m.segments)
FROM fairlane.messages_finished m JOIN fairlane.queues q ON q.id = m.queue_id
GROUP BY m.tenant_id, q.destination_id, q.sender_id, (m.finished_at AT TIME ZONE 'UTC')::date, m.status;
-- the bodies of the callbacks already written, as the callback sender used to build them when it claimed them
UPDATE fairlane.callbacks c
SET payload = json_build_object(
    'type', 'message.status',
    'timestamp', to_char(e.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    'data', json_build_object(
        'event_id', e.id::text,
        'sequence', (SELECT count(*) FROM fairlane.message_events x WHERE x.message_id = e.message_id AND x.id <= e.id),
        'message_id', e.message_id::text,
        'status', e.status,
        'at', to_char(e.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'to', m.recipient,
        'from', m.sender,
        'destination', m.destination,
        'segments', m.segments,
        'error_code', e.detail ->> 'error_code',
        'error_message', e.detail ->> 'error_message',
        'detail', e.detail))::text
FROM fairlane.message_events e
JOIN fairlane.message_details m ON m.id = e.message_id
WHERE e.id = c.event_id;
UPDATE fairlane.callbacks c SET payload = '{}' WHERE c.payload IS NULL;  -- an event that no longer exists
ALTER TABLE fairlane.callbacks ALTER COLUMN payload SET NOT NULL;
DROP TABLE fairlane.messages_0005, fairlane.message_events_0005;
-- the partitions of what finished so far (older than the retention: made, then dropped); the ones ahead are
-- the maintenance leader's to make, for the retention configured by then
DO $$
BEGIN
    WHILE EXISTS (SELECT FROM fairlane.messages_finished_default) AND fairlane.make_history_partition_v1() LOOP
    END LOOP;
    WHILE fairlane.drop_history_partition_v1() LOOP
    END LOOP;
END
$$;
"""

SECURITY = r"""
GRANT SELECT ON fairlane.messages, fairlane.message_events, fairlane.usage_daily TO fairlane_tenant;
ALTER TABLE fairlane.messages ENABLE ROW LEVEL SECURITY;
CREATE POLICY messages_own_tenant ON fairlane.messages FOR SELECT TO fairlane_tenant
    USING (tenant_id = (SELECT fairlane.role_tenant_id_v1(current_user)));
ALTER TABLE fairlane.message_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY message_events_own_tenant ON fairlane.message_events FOR SELECT TO fairlane_tenant
    USING (tenant_id = (SELECT fairlane.role_tenant_id_v1(current_user)));
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA fairlane FROM PUBLIC;
GRANT EXECUTE ON FUNCTION fairlane.role_tenant_id_v1(name), fairlane.role_tenant_v1(name),
    fairlane.raise_v1(text, text, text, text, bigint, jsonb), fairlane.authorize_outbox_v1(),
    fairlane.viewer_tenant_v1(name) TO fairlane_tenant;
GRANT EXECUTE ON FUNCTION fairlane.submit(text, text, text, text, text, text, timestamptz, integer, text)
    TO fairlane_tenant;
"""


def upgrade() -> None:
    connection = op.get_bind()
    execute_sql(connection, ASIDE)
    execute_sql(connection, frozen(revision, "tables/live_and_finished.sql"))
    for path in FUNCTIONS:
        execute_sql(connection, frozen(revision, path))
    execute_sql(connection, MOVE_DATA)
    execute_sql(connection, SECURITY)


# --- downgrade: the single tables of 0005 again, every message and event back in them ------------------

OLD_TABLES = r"""
CREATE TABLE fairlane.messages_0005 (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    tenant_id bigint NOT NULL,
    queue_id bigint NOT NULL,
    status text NOT NULL CONSTRAINT messages_status_check CHECK (status IN (
        'scheduled', 'queued', 'sending', 'sent', 'delivered', 'undelivered',
        'failed', 'expired', 'canceled')),
    recipient text NOT NULL,
    body text NOT NULL,
    segments integer NOT NULL CONSTRAINT messages_segments_check CHECK (segments > 0),
    encoding text NOT NULL CONSTRAINT messages_encoding_check CHECK (encoding IN ('GSM-7', 'UCS-2')),
    send_at timestamptz,
    expires_at timestamptz NOT NULL,
    status_callback text,
    idempotency_key text,
    attempts integer NOT NULL DEFAULT 0,
    lease_until timestamptz,
    provider_id text,
    error_code text,
    error_message text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    available_at timestamptz,
    claim_id bigint,
    CONSTRAINT messages_queue_id_tenant_id_fkey FOREIGN KEY (queue_id, tenant_id)
        REFERENCES fairlane.queues (id, tenant_id)
) WITH (fillfactor = 90);
INSERT INTO fairlane.messages_0005 (
    id, tenant_id, queue_id, status, recipient, body, segments, encoding, send_at, expires_at, status_callback,
    idempotency_key, attempts, lease_until, provider_id, error_code, error_message, created_at, updated_at,
    available_at, claim_id)
SELECT id, tenant_id, queue_id, status, recipient, body, segments, encoding, send_at, expires_at, status_callback,
       idempotency_key, attempts, lease_until, provider_id, error_code, error_message, created_at, updated_at,
       available_at, claim_id
FROM fairlane.messages;
CREATE TABLE fairlane.message_events_0005 (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id bigint NOT NULL,
    tenant_id bigint NOT NULL,
    status text NOT NULL CONSTRAINT message_events_status_check CHECK (status IN (
        'scheduled', 'queued', 'sending', 'sent', 'delivered', 'undelivered',
        'failed', 'expired', 'canceled')),
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    detail jsonb
);
INSERT INTO fairlane.message_events_0005 (id, message_id, tenant_id, status, at, detail) OVERRIDING SYSTEM VALUE
SELECT id, message_id, tenant_id, status, at, detail FROM fairlane.message_events;
SELECT setval(pg_get_serial_sequence('fairlane.messages_0005', 'id'), s.last_value, s.is_called)
FROM fairlane.messages_id_seq s;
SELECT setval(pg_get_serial_sequence('fairlane.message_events_0005', 'id'), s.last_value, s.is_called)
FROM fairlane.message_events_id_seq s;
"""

OLD_FUNCTIONS = (
    ("0002", "functions/dispatch_v1.sql", ("requeue_v1", "complete_v1", "rescue_v1", "promote_v1", "receipt_v1")),
    ("0003", "functions/api_v1.sql", ("submit_json_v1", "cancel_v1")),
    ("0003", "functions/accept_v2.sql", ("accept_v2",)),
    ("0004", "functions/dispatch_v2.sql", ("claim_v2",)),
)
OLD_VIEWS = (
    ("0003", "views/message_details_v1.sql"),
    ("0004", "views/queue_scores_v2.sql"),
    ("0005", "views/queue_state.sql"),
    ("0001", "views/tenant_usage_v1.sql"),
)

DROP_NEW = r"""
DROP VIEW fairlane.usage_daily;
DROP VIEW fairlane.message_details, fairlane.queue_scores, fairlane.queue_state, fairlane.tenant_usage;
DROP FUNCTION fairlane.expire_v1(timestamptz), fairlane.make_history_partition_v1(timestamptz),
    fairlane.drop_history_partition_v1(timestamptz),
    fairlane.history_partition_seconds_v1(integer), fairlane.prune_v1(timestamptz),
    fairlane.finish_v1(bigint[], text[], text[], text[], text[], integer[], jsonb[], text[], bigint, timestamptz),
    fairlane.record_events_v1(fairlane.new_event_v1[]), fairlane.viewer_tenant_v1(name);
DROP TYPE fairlane.new_event_v1;
DROP TABLE fairlane.messages, fairlane.message_events, fairlane.history_partitions, fairlane.settings,
    fairlane.usage_counters;
DROP SEQUENCE fairlane.messages_id_seq, fairlane.message_events_id_seq;
DROP INDEX fairlane.idempotency_keys_created_at_idx, fairlane.callbacks_finished_idx;
ALTER TABLE fairlane.callbacks DROP COLUMN payload;
ALTER TABLE fairlane.messages_0005 RENAME TO messages;
ALTER TABLE fairlane.message_events_0005 RENAME TO message_events;
ALTER SEQUENCE fairlane.messages_0005_id_seq RENAME TO messages_id_seq;
ALTER SEQUENCE fairlane.message_events_0005_id_seq RENAME TO message_events_id_seq;
ALTER INDEX fairlane.messages_0005_pkey RENAME TO messages_pkey;
ALTER INDEX fairlane.message_events_0005_pkey RENAME TO message_events_pkey;
CREATE INDEX messages_ready_idx ON fairlane.messages (queue_id, id) WHERE status = 'queued';
CREATE INDEX messages_scheduled_idx ON fairlane.messages (send_at) WHERE status = 'scheduled';
CREATE INDEX messages_tenant_id_idx ON fairlane.messages (tenant_id, id);
CREATE INDEX messages_lease_idx ON fairlane.messages (lease_until) WHERE status = 'sending';
CREATE INDEX messages_provider_id_idx ON fairlane.messages (provider_id) WHERE provider_id IS NOT NULL;
CREATE INDEX message_events_message_id_idx ON fairlane.message_events (message_id, id);
"""

OLD_TRIGGER_AND_SECURITY = r"""
CREATE TRIGGER message_events_callbacks AFTER INSERT ON fairlane.message_events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION fairlane.events_callbacks_v1();
GRANT SELECT ON fairlane.messages, fairlane.message_events TO fairlane_tenant;
ALTER TABLE fairlane.messages ENABLE ROW LEVEL SECURITY;
CREATE POLICY messages_own_tenant ON fairlane.messages FOR SELECT TO fairlane_tenant
    USING (tenant_id = (SELECT fairlane.role_tenant_id_v1(current_user)));
ALTER TABLE fairlane.message_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY message_events_own_tenant ON fairlane.message_events FOR SELECT TO fairlane_tenant
    USING (tenant_id = (SELECT fairlane.role_tenant_id_v1(current_user)));
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA fairlane FROM PUBLIC;
"""


def downgrade() -> None:
    connection = op.get_bind()
    execute_sql(connection, OLD_TABLES)
    for revision_, path, names in OLD_FUNCTIONS:
        for name in names:
            execute_sql(connection, or_replace(read_function(revision_, path, name)))
    execute_sql(connection, DROP_NEW)
    for revision_, path in OLD_VIEWS:
        execute_sql(connection, frozen(revision_, path).replace("CREATE OR REPLACE VIEW", "CREATE VIEW"))
    execute_sql(connection, frozen("0003", "functions/callbacks_v1.sql"))
    execute_sql(connection, OLD_TRIGGER_AND_SECURITY)
