"""Foundation: configuration tables, queues, messages, events, idempotency keys, the outbox, roles, views.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from alembic import op

from db.schema import execute_sql, frozen

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = r"""
CREATE SCHEMA fairlane;

CREATE TABLE fairlane.tenant_sets (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL CONSTRAINT tenant_sets_name_key UNIQUE
        CONSTRAINT tenant_sets_name_check CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    weight numeric NOT NULL DEFAULT 1 CONSTRAINT tenant_sets_weight_check CHECK (weight > 0),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE fairlane.tenants (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL CONSTRAINT tenants_name_key UNIQUE
        CONSTRAINT tenants_name_check CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    tenant_set_id bigint NOT NULL REFERENCES fairlane.tenant_sets (id),
    weight numeric NOT NULL DEFAULT 1 CONSTRAINT tenants_weight_check CHECK (weight > 0),
    status_callback text CONSTRAINT tenants_status_callback_check
        CHECK (status_callback ~ '^https?://[^[:space:]]+$' AND length(status_callback) <= 2048),
    signing_secret text NOT NULL
        DEFAULT 'whsec_' || replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tenants_tenant_set_id_idx ON fairlane.tenants (tenant_set_id);

-- API keys are stored as SHA-256 hex digests; a tenant may hold several while one is rotated out.
CREATE TABLE fairlane.api_keys (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id bigint NOT NULL REFERENCES fairlane.tenants (id) ON DELETE CASCADE,
    key_hash text NOT NULL CONSTRAINT api_keys_key_hash_key UNIQUE
        CONSTRAINT api_keys_key_hash_check CHECK (key_hash ~ '^[0-9a-f]{64}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX api_keys_tenant_id_idx ON fairlane.api_keys (tenant_id);

CREATE TABLE fairlane.tenant_roles (
    role_name text PRIMARY KEY,
    tenant_id bigint NOT NULL REFERENCES fairlane.tenants (id) ON DELETE CASCADE
);

CREATE TABLE fairlane.senders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id bigint NOT NULL REFERENCES fairlane.tenants (id),
    address text NOT NULL,
    type text NOT NULL CONSTRAINT senders_type_check
        CHECK (type IN ('long_code', 'short_code', 'toll_free', 'alphanumeric')),
    rate_cap numeric CONSTRAINT senders_rate_cap_check CHECK (rate_cap > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT senders_tenant_id_address_key UNIQUE (tenant_id, address),
    CONSTRAINT senders_id_tenant_id_key UNIQUE (id, tenant_id),
    CONSTRAINT senders_address_check CHECK (
        CASE type
            WHEN 'alphanumeric' THEN address ~ '^[A-Za-z0-9 ]{1,11}$' AND address ~ '[A-Za-z]'
            WHEN 'short_code' THEN address ~ '^[0-9]{3,8}$'
            ELSE address ~ '^\+[1-9][0-9]{6,14}$'
        END
    )
);

CREATE TABLE fairlane.gateways (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL CONSTRAINT gateways_name_key UNIQUE
        CONSTRAINT gateways_name_check CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    kind text NOT NULL CONSTRAINT gateways_kind_check CHECK (kind IN ('http', 'simulator', 'smpp')),
    url text NOT NULL CONSTRAINT gateways_url_check CHECK (url ~ '^[a-z][a-z0-9+.-]*://[^[:space:]]+$'),
    timeout_seconds numeric NOT NULL DEFAULT 10 CONSTRAINT gateways_timeout_seconds_check CHECK (timeout_seconds > 0),
    max_in_flight integer NOT NULL DEFAULT 100 CONSTRAINT gateways_max_in_flight_check CHECK (max_in_flight > 0),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE fairlane.destinations (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code text NOT NULL CONSTRAINT destinations_code_key UNIQUE
        CONSTRAINT destinations_code_check CHECK (code ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$'),
    gateway_id bigint NOT NULL REFERENCES fairlane.gateways (id),
    rate numeric NOT NULL CONSTRAINT destinations_rate_check CHECK (rate > 0),
    burst integer NOT NULL DEFAULT 1 CONSTRAINT destinations_burst_check CHECK (burst >= 0),
    max_drain_seconds integer NOT NULL DEFAULT 14400
        CONSTRAINT destinations_max_drain_seconds_check CHECK (max_drain_seconds > 0),
    default_validity_seconds integer NOT NULL DEFAULT 36000
        CONSTRAINT destinations_default_validity_seconds_check CHECK (default_validity_seconds BETWEEN 1 AND 36000),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX destinations_gateway_id_idx ON fairlane.destinations (gateway_id);

-- A tenant set's share of one destination: a weight (instead of the set's own) or an absolute rate.
CREATE TABLE fairlane.allocations (
    destination_id bigint NOT NULL REFERENCES fairlane.destinations (id) ON DELETE CASCADE,
    tenant_set_id bigint NOT NULL REFERENCES fairlane.tenant_sets (id) ON DELETE CASCADE,
    weight numeric CONSTRAINT allocations_weight_check CHECK (weight > 0),
    rate numeric CONSTRAINT allocations_rate_check CHECK (rate > 0),
    PRIMARY KEY (destination_id, tenant_set_id),
    CONSTRAINT allocations_weight_or_rate_check CHECK ((weight IS NULL) <> (rate IS NULL))
);

-- Recipient prefix (longest match wins; '+' alone is the catch-all) and sender type -> destination.
CREATE TABLE fairlane.routes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    prefix text NOT NULL CONSTRAINT routes_prefix_check CHECK (prefix ~ '^\+[0-9]{0,15}$'),
    sender_type text NOT NULL CONSTRAINT routes_sender_type_check
        CHECK (sender_type IN ('long_code', 'short_code', 'toll_free', 'alphanumeric')),
    destination_id bigint NOT NULL REFERENCES fairlane.destinations (id),
    CONSTRAINT routes_prefix_sender_type_key UNIQUE (prefix, sender_type)
);
CREATE INDEX routes_destination_id_idx ON fairlane.routes (destination_id);

-- One FIFO per (tenant, destination, sender). The counters change with every submission and claim:
-- fillfactor 50 and no index on them keeps those updates HOT.
CREATE TABLE fairlane.queues (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id bigint NOT NULL REFERENCES fairlane.tenants (id),
    destination_id bigint NOT NULL REFERENCES fairlane.destinations (id),
    sender_id bigint NOT NULL,
    queued_count integer NOT NULL DEFAULT 0 CONSTRAINT queues_queued_count_check CHECK (queued_count >= 0),
    queued_segments bigint NOT NULL DEFAULT 0 CONSTRAINT queues_queued_segments_check CHECK (queued_segments >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT queues_tenant_id_destination_id_sender_id_key UNIQUE (tenant_id, destination_id, sender_id),
    CONSTRAINT queues_id_tenant_id_key UNIQUE (id, tenant_id),
    -- the sender belongs to the queue's tenant
    CONSTRAINT queues_sender_id_tenant_id_fkey FOREIGN KEY (sender_id, tenant_id)
        REFERENCES fairlane.senders (id, tenant_id)
) WITH (fillfactor = 50);
CREATE INDEX queues_destination_id_idx ON fairlane.queues (destination_id);

CREATE TABLE fairlane.messages (
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
    -- a message's tenant is its queue's tenant
    CONSTRAINT messages_queue_id_tenant_id_fkey FOREIGN KEY (queue_id, tenant_id)
        REFERENCES fairlane.queues (id, tenant_id)
) WITH (fillfactor = 90);
-- The claim path: the ready rows of one queue in FIFO order, and nothing else.
CREATE INDEX messages_ready_idx ON fairlane.messages (queue_id, id) WHERE status = 'queued';
CREATE INDEX messages_scheduled_idx ON fairlane.messages (send_at) WHERE status = 'scheduled';
CREATE INDEX messages_tenant_id_idx ON fairlane.messages (tenant_id, id);

CREATE TABLE fairlane.message_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- no foreign key: only fairlane's functions write events, and a per-row key check (which also
    -- locks the message row) would double the cost of every bulk submission
    message_id bigint NOT NULL,
    tenant_id bigint NOT NULL,
    status text NOT NULL CONSTRAINT message_events_status_check CHECK (status IN (
        'scheduled', 'queued', 'sending', 'sent', 'delivered', 'undelivered',
        'failed', 'expired', 'canceled')),
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    detail jsonb
);
CREATE INDEX message_events_message_id_idx ON fairlane.message_events (message_id, id);

CREATE TABLE fairlane.idempotency_keys (
    tenant_id bigint NOT NULL REFERENCES fairlane.tenants (id) ON DELETE CASCADE,
    key text NOT NULL,
    request_hash text NOT NULL,
    message_id bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);

-- Insert-only entry point for batch jobs. Rows live only until the end of their statement (the trigger
-- turns them into messages and deletes them), so the table is unlogged and always reads empty.
CREATE UNLOGGED TABLE fairlane.outbox (
    tenant text,
    recipient text,
    body text,
    sender text,
    destination text,
    idempotency_key text,
    send_at timestamptz,
    validity_seconds integer,
    status_callback text,
    row_number bigint GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX outbox_row_number_idx ON fairlane.outbox (row_number);
"""

TRIGGERS_AND_SECURITY = r"""
-- Triggers fire in name order: authorize (as the inserting role), then accept (as the owner).
CREATE TRIGGER outbox_1_authorize AFTER INSERT ON fairlane.outbox
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION fairlane.authorize_outbox_v1();
CREATE TRIGGER outbox_2_accept AFTER INSERT ON fairlane.outbox
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION fairlane.accept_outbox_v1();

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
GRANT SELECT ON fairlane.messages, fairlane.message_events TO fairlane_tenant;
GRANT EXECUTE ON FUNCTION fairlane.submit(text, text, text, text, text, text, timestamptz, integer, text)
    TO fairlane_tenant;
GRANT EXECUTE ON FUNCTION fairlane.role_tenant_id_v1(name), fairlane.role_tenant_v1(name),
    fairlane.raise_v1(text, text, text, text, bigint, jsonb), fairlane.authorize_outbox_v1() TO fairlane_tenant;

ALTER TABLE fairlane.messages ENABLE ROW LEVEL SECURITY;
CREATE POLICY messages_own_tenant ON fairlane.messages FOR SELECT TO fairlane_tenant
    USING (tenant_id = (SELECT fairlane.role_tenant_id_v1(current_user)));
ALTER TABLE fairlane.message_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY message_events_own_tenant ON fairlane.message_events FOR SELECT TO fairlane_tenant
    USING (tenant_id = (SELECT fairlane.role_tenant_id_v1(current_user)));
"""


def upgrade() -> None:
    connection = op.get_bind()
    execute_sql(connection, SCHEMA)
    for path in (
        "functions/errors_v1.sql",
        "functions/segments_v1.sql",
        "functions/portions_v1.sql",
        "functions/roles_v1.sql",
        "functions/accept_v1.sql",
        "views/queue_state_v1.sql",
        "views/destination_load_v1.sql",
        "views/tenant_usage_v1.sql",
    ):
        execute_sql(connection, frozen(revision, path))
    execute_sql(connection, TRIGGERS_AND_SECURITY)


def downgrade() -> None:
    # The cluster-wide role fairlane_tenant (and tenant login roles) stay: other databases may use them.
    execute_sql(
        op.get_bind(),
        "REVOKE ALL ON SCHEMA fairlane FROM fairlane_tenant; DROP SCHEMA fairlane CASCADE;",
    )
