"""Dispatch v2: the destination's token bucket, AIMD factor, virtual time and recent rate move from the one
destination_state row every claim locked into destination_slices (up to eight per destination), claimed
SKIP LOCKED by claim_v2; claimers that find every eligible queue locked share them (docs/decisions/0011).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from alembic import op

from db.schema import execute_sql, frozen, or_replace, read_function

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SCHEMA = r"""
-- Small rows, one locked per concurrent claimer: fillfactor 50 and no index but the key keep updates HOT.
CREATE TABLE fairlane.destination_slices (
    destination_id bigint NOT NULL REFERENCES fairlane.destinations (id) ON DELETE CASCADE,
    slice integer NOT NULL CONSTRAINT destination_slices_slice_check CHECK (slice BETWEEN 0 AND 7),
    tokens double precision NOT NULL,
    refilled_at timestamptz NOT NULL,
    rate_factor double precision NOT NULL DEFAULT 1
        CONSTRAINT destination_slices_rate_factor_check CHECK (rate_factor > 0 AND rate_factor <= 1),
    throttled_at timestamptz,
    virtual_time double precision NOT NULL DEFAULT 0,
    recent_rate double precision NOT NULL DEFAULT 0,
    rate_at timestamptz,
    PRIMARY KEY (destination_id, slice)
) WITH (fillfactor = 50);
INSERT INTO fairlane.destination_slices (destination_id, slice, tokens, refilled_at, rate_factor, throttled_at,
                                         virtual_time, recent_rate, rate_at)
SELECT s.destination_id, i, greatest(d.burst, 1), clock_timestamp(), s.rate_factor, s.throttled_at,
       s.virtual_time, s.recent_rate / 8, s.rate_at
FROM fairlane.destination_state s JOIN fairlane.destinations d ON d.id = s.destination_id
CROSS JOIN generate_series(0, 7) i;
"""

SWITCH = r"""
DROP TRIGGER destinations_state ON fairlane.destinations;
CREATE TRIGGER destinations_state AFTER INSERT ON fairlane.destinations
    FOR EACH ROW EXECUTE FUNCTION fairlane.destination_created_v2();
DROP TRIGGER queues_membership ON fairlane.queues;
CREATE TRIGGER queues_membership BEFORE UPDATE OF queued_count ON fairlane.queues
    FOR EACH ROW WHEN ((OLD.queued_count = 0) <> (NEW.queued_count = 0))
    EXECUTE FUNCTION fairlane.queue_membership_v2();
DROP FUNCTION fairlane.claim_v1(bigint, integer, double precision, timestamptz);
DROP FUNCTION fairlane.throttle_v1(bigint, timestamptz);
DROP FUNCTION fairlane.destination_created_v1();
DROP FUNCTION fairlane.queue_membership_v1();
ALTER TABLE fairlane.destination_state DROP COLUMN tokens, DROP COLUMN refilled_at, DROP COLUMN rate_factor,
    DROP COLUMN throttled_at, DROP COLUMN virtual_time, DROP COLUMN recent_rate, DROP COLUMN rate_at;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA fairlane FROM PUBLIC;
"""

V1_FUNCTIONS = ("claim_v1", "throttle_v1", "destination_created_v1", "queue_membership_v1")


def upgrade() -> None:
    connection = op.get_bind()
    execute_sql(connection, SCHEMA)
    for path in ("functions/dispatch_v2.sql", "views/destination_load_v3.sql", "views/queue_scores_v2.sql"):
        execute_sql(connection, frozen(revision, path))
    execute_sql(connection, SWITCH)


def downgrade() -> None:
    connection = op.get_bind()
    execute_sql(
        connection,
        r"""
        ALTER TABLE fairlane.destination_state
            ADD COLUMN tokens double precision NOT NULL DEFAULT 0,
            ADD COLUMN refilled_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            ADD COLUMN rate_factor double precision NOT NULL DEFAULT 1
                CONSTRAINT destination_state_rate_factor_check CHECK (rate_factor > 0 AND rate_factor <= 1),
            ADD COLUMN throttled_at timestamptz,
            ADD COLUMN virtual_time double precision NOT NULL DEFAULT 0,
            ADD COLUMN recent_rate double precision NOT NULL DEFAULT 0,
            ADD COLUMN rate_at timestamptz;
        ALTER TABLE fairlane.destination_state ALTER COLUMN tokens DROP DEFAULT,
            ALTER COLUMN refilled_at DROP DEFAULT;
        UPDATE fairlane.destination_state st
        SET tokens = sl.tokens, rate_factor = sl.rate_factor, throttled_at = sl.throttled_at,
            virtual_time = sl.virtual_time, recent_rate = sl.recent_rate, rate_at = sl.rate_at
        FROM (
            SELECT destination_id, sum(tokens) AS tokens, max(rate_factor) AS rate_factor,
                   max(throttled_at) AS throttled_at, max(virtual_time) AS virtual_time,
                   sum(recent_rate) AS recent_rate, max(rate_at) AS rate_at
            FROM fairlane.destination_slices GROUP BY destination_id
        ) sl
        WHERE sl.destination_id = st.destination_id;
        """,
    )
    for name in V1_FUNCTIONS:
        execute_sql(connection, read_function("0002", "functions/dispatch_v1.sql", name))
    for path in ("views/queue_scores_v1.sql", "views/destination_load_v2.sql"):
        execute_sql(connection, or_replace(frozen("0002", path)))
    execute_sql(
        connection,
        r"""
        DROP TRIGGER destinations_state ON fairlane.destinations;
        CREATE TRIGGER destinations_state AFTER INSERT ON fairlane.destinations
            FOR EACH ROW EXECUTE FUNCTION fairlane.destination_created_v1();
        DROP TRIGGER queues_membership ON fairlane.queues;
        CREATE TRIGGER queues_membership BEFORE UPDATE OF queued_count ON fairlane.queues
            FOR EACH ROW WHEN ((OLD.queued_count = 0) <> (NEW.queued_count = 0))
            EXECUTE FUNCTION fairlane.queue_membership_v1();
        DROP FUNCTION fairlane.throttle_v2(bigint, timestamptz);
        DROP FUNCTION fairlane.claim_v2(bigint, integer, double precision, timestamptz);
        DROP FUNCTION fairlane.destination_created_v2();
        DROP FUNCTION fairlane.queue_membership_v2();
        DROP FUNCTION fairlane.slice_count_v1(numeric, integer);
        DROP FUNCTION fairlane.slice_tokens_v1(double precision, timestamptz, double precision, double precision,
                                               double precision, timestamptz);
        DROP TABLE fairlane.destination_slices;
        REVOKE ALL ON ALL FUNCTIONS IN SCHEMA fairlane FROM PUBLIC;
        """,
    )
