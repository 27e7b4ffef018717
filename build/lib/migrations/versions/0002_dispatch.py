"""Dispatch: per-queue virtual time and portion, per-destination token bucket and throttle state, leases,
the claim, completion, rescue, promotion, and the queue_scores view.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from alembic import op

from db.schema import execute_sql, frozen

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = r"""
ALTER TABLE fairlane.queues
    ADD COLUMN vtime double precision NOT NULL DEFAULT 0,
    ADD COLUMN portion double precision,
    ADD COLUMN not_before timestamptz,
    ADD COLUMN recent_rate double precision NOT NULL DEFAULT 0,
    ADD COLUMN rate_at timestamptz;
-- The claim's entry point: the active queues of a destination in virtual-time order.
CREATE INDEX queues_claim_idx ON fairlane.queues (destination_id, vtime, id) WHERE queued_count > 0;

ALTER TABLE fairlane.messages
    ADD COLUMN available_at timestamptz,
    ADD COLUMN claim_id bigint;
CREATE INDEX messages_lease_idx ON fairlane.messages (lease_until) WHERE status = 'sending';
-- Delivery receipts name the provider's id.
CREATE INDEX messages_provider_id_idx ON fairlane.messages (provider_id) WHERE provider_id IS NOT NULL;

CREATE SEQUENCE fairlane.claims_id_seq;
-- Moves on whenever fair shares may have changed (a queue joined or left, configuration changed).
CREATE SEQUENCE fairlane.shares_seq;

-- One small row per destination, touched by every claim: fillfactor 50 and no index but the key keeps
-- its updates HOT.
CREATE TABLE fairlane.destination_state (
    destination_id bigint PRIMARY KEY REFERENCES fairlane.destinations (id) ON DELETE CASCADE,
    tokens double precision NOT NULL,
    refilled_at timestamptz NOT NULL,
    rate_factor double precision NOT NULL DEFAULT 1
        CONSTRAINT destination_state_rate_factor_check CHECK (rate_factor > 0 AND rate_factor <= 1),
    throttled_at timestamptz,
    virtual_time double precision NOT NULL DEFAULT 0,
    portions_version bigint NOT NULL DEFAULT 0,
    portions_at timestamptz,
    recent_rate double precision NOT NULL DEFAULT 0,
    rate_at timestamptz
) WITH (fillfactor = 50);
INSERT INTO fairlane.destination_state (destination_id, tokens, refilled_at)
SELECT d.id, greatest(d.burst, 1), clock_timestamp() FROM fairlane.destinations d;
"""

TRIGGERS = r"""
CREATE TRIGGER destinations_state AFTER INSERT ON fairlane.destinations
    FOR EACH ROW EXECUTE FUNCTION fairlane.destination_created_v1();
CREATE TRIGGER queues_membership BEFORE UPDATE OF queued_count ON fairlane.queues
    FOR EACH ROW WHEN ((OLD.queued_count = 0) <> (NEW.queued_count = 0))
    EXECUTE FUNCTION fairlane.queue_membership_v1();
CREATE TRIGGER tenant_sets_shares AFTER INSERT OR UPDATE OR DELETE ON fairlane.tenant_sets
    FOR EACH STATEMENT EXECUTE FUNCTION fairlane.shares_changed_v1();
CREATE TRIGGER tenants_shares AFTER INSERT OR UPDATE OR DELETE ON fairlane.tenants
    FOR EACH STATEMENT EXECUTE FUNCTION fairlane.shares_changed_v1();
CREATE TRIGGER senders_shares AFTER INSERT OR UPDATE OR DELETE ON fairlane.senders
    FOR EACH STATEMENT EXECUTE FUNCTION fairlane.shares_changed_v1();
CREATE TRIGGER allocations_shares AFTER INSERT OR UPDATE OR DELETE ON fairlane.allocations
    FOR EACH STATEMENT EXECUTE FUNCTION fairlane.shares_changed_v1();
CREATE TRIGGER destinations_shares AFTER UPDATE ON fairlane.destinations
    FOR EACH STATEMENT EXECUTE FUNCTION fairlane.shares_changed_v1();
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA fairlane FROM PUBLIC;
"""


def upgrade() -> None:
    connection = op.get_bind()
    execute_sql(connection, SCHEMA)
    for path in (
        "functions/shares_v1.sql",
        "functions/dispatch_v1.sql",
        "views/queue_scores_v1.sql",
        "views/destination_load_v2.sql",
    ):
        execute_sql(connection, frozen(revision, path))
    execute_sql(connection, TRIGGERS)


def downgrade() -> None:
    connection = op.get_bind()
    execute_sql(
        connection,
        r"""
        DROP VIEW fairlane.queue_scores;
        DROP VIEW fairlane.destination_load;
        DROP TRIGGER destinations_state ON fairlane.destinations;
        DROP TRIGGER queues_membership ON fairlane.queues;
        DROP TRIGGER tenant_sets_shares ON fairlane.tenant_sets;
        DROP TRIGGER tenants_shares ON fairlane.tenants;
        DROP TRIGGER senders_shares ON fairlane.senders;
        DROP TRIGGER allocations_shares ON fairlane.allocations;
        DROP TRIGGER destinations_shares ON fairlane.destinations;
        DROP FUNCTION fairlane.receipt_v1(text, text, bigint, text, text);
        DROP FUNCTION fairlane.throttle_v1(bigint, timestamptz);
        DROP FUNCTION fairlane.promote_v1(timestamptz);
        DROP FUNCTION fairlane.rescue_v1(integer, timestamptz);
        DROP FUNCTION fairlane.complete_v1(bigint, bigint[], text[], text[], text[], text[],
                                           double precision[], integer, timestamptz);
        DROP FUNCTION fairlane.claim_v1(bigint, integer, double precision, timestamptz);
        DROP FUNCTION fairlane.requeue_v1(bigint[], timestamptz[], text[], timestamptz);
        DROP FUNCTION fairlane.destination_created_v1();
        DROP FUNCTION fairlane.shares_changed_v1();
        DROP FUNCTION fairlane.queue_membership_v1();
        DROP TYPE fairlane.claimed_message_v1;
        DROP FUNCTION fairlane.decayed_rate_v1(double precision, timestamptz, timestamptz);
        DROP FUNCTION fairlane.refresh_portions_v1(bigint);
        DROP FUNCTION fairlane.compute_portions_v1(bigint);
        DROP FUNCTION fairlane.water_fill_v1(double precision, double precision[], double precision[]);
        DROP TABLE fairlane.destination_state;
        DROP SEQUENCE fairlane.claims_id_seq;
        DROP SEQUENCE fairlane.shares_seq;
        DROP INDEX fairlane.messages_lease_idx;
        DROP INDEX fairlane.messages_provider_id_idx;
        ALTER TABLE fairlane.messages DROP COLUMN available_at, DROP COLUMN claim_id;
        DROP INDEX fairlane.queues_claim_idx;
        ALTER TABLE fairlane.queues DROP COLUMN vtime, DROP COLUMN portion, DROP COLUMN not_before,
            DROP COLUMN recent_rate, DROP COLUMN rate_at;
        """,
    )
    execute_sql(connection, frozen("0001", "views/destination_load_v1.sql"))
