-- Schema fairlane as it is at the head migration: the tables with their indexes, in dependency order.
-- Types, functions and views have a file each (types/, functions/, views/); then triggers.sql and
-- security.sql. db.schema.build runs them in that order (docs/decisions/0013).

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
    created_at timestamptz NOT NULL DEFAULT now(),
    -- the secret before the last rotation: callbacks are signed with both until this grace period ends
    previous_signing_secret text,
    previous_signing_secret_until timestamptz,
    -- its messages in status 'scheduled', held against settings.scheduled_per_tenant: kept by accept_v2,
    -- promote_v1, cancel_v1 and expire_v1, the only ways in and out of that status
    scheduled_count integer NOT NULL DEFAULT 0 CONSTRAINT tenants_scheduled_count_check CHECK (scheduled_count >= 0)
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
    ),
    -- quota windows (docs/decisions/0020), as for destinations: kept in quota_windows by sync_windows_v1
    per_minute integer CONSTRAINT senders_per_minute_check CHECK (per_minute > 0),
    per_hour integer CONSTRAINT senders_per_hour_check CHECK (per_hour > 0),
    per_day integer CONSTRAINT senders_per_day_check CHECK (per_day > 0),
    reset_timezone text NOT NULL DEFAULT 'UTC',
    window_kind text NOT NULL DEFAULT 'calendar'
        CONSTRAINT senders_window_kind_check CHECK (window_kind IN ('calendar', 'sliding'))
);

CREATE TABLE fairlane.gateways (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL CONSTRAINT gateways_name_key UNIQUE
        CONSTRAINT gateways_name_check CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    kind text NOT NULL CONSTRAINT gateways_kind_check CHECK (kind IN ('http', 'simulator', 'smpp')),
    url text NOT NULL CONSTRAINT gateways_url_check CHECK (url ~ '^[a-z][a-z0-9+.-]*://[^[:space:]]+$'),
    timeout_seconds numeric NOT NULL DEFAULT 10 CONSTRAINT gateways_timeout_seconds_check CHECK (timeout_seconds > 0),
    max_in_flight integer NOT NULL DEFAULT 100 CONSTRAINT gateways_max_in_flight_check CHECK (max_in_flight > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    -- the bearer token its delivery receipts must carry (docs/decisions/0017): every gateway has one, made up
    -- when none is given
    receipts_token text NOT NULL DEFAULT 'rt_' || replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '')
        CONSTRAINT gateways_receipts_token_check CHECK (length(receipts_token) BETWEEN 16 AND 256),
    -- an smpp gateway's session settings (host, port, system_id, password, system_type, binds, window,
    -- enquire_link_seconds, source_ton_npi, dest_ton_npi, concatenation: service/model/configuration.py); its
    -- url is then smpp://host:port
    smpp jsonb CONSTRAINT gateways_smpp_check CHECK (smpp IS NULL OR kind = 'smpp' AND jsonb_typeof(smpp) = 'object')
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
    created_at timestamptz NOT NULL DEFAULT now(),
    -- quota windows beside the per-second bucket (docs/decisions/0020): at most this many segments per calendar
    -- minute, hour and day in reset_timezone (a day resets at local midnight), or in any sliding minute, hour
    -- or day (window_kind 'sliding'); their use is counted in quota_windows (sync_windows_v1 keeps its rows)
    per_minute integer CONSTRAINT destinations_per_minute_check CHECK (per_minute > 0),
    per_hour integer CONSTRAINT destinations_per_hour_check CHECK (per_hour > 0),
    per_day integer CONSTRAINT destinations_per_day_check CHECK (per_day > 0),
    reset_timezone text NOT NULL DEFAULT 'UTC',
    window_kind text NOT NULL DEFAULT 'calendar'
        CONSTRAINT destinations_window_kind_check CHECK (window_kind IN ('calendar', 'sliding'))
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
    -- fair queueing (claim_v2): the virtual time, in seconds of the queue's portion, and the portion in
    -- segments per second while the queue is active (refresh_portions_v2)
    vtime double precision NOT NULL DEFAULT 0,
    portion double precision,
    -- a sender rate cap: the queue's next message may not go before this
    not_before timestamptz,
    -- segments per second sent, decaying (decayed_rate_v1), as of rate_at
    recent_rate double precision NOT NULL DEFAULT 0,
    rate_at timestamptz,
    CONSTRAINT queues_tenant_id_destination_id_sender_id_key UNIQUE (tenant_id, destination_id, sender_id),
    CONSTRAINT queues_id_tenant_id_key UNIQUE (id, tenant_id),
    -- the sender belongs to the queue's tenant
    CONSTRAINT queues_sender_id_tenant_id_fkey FOREIGN KEY (sender_id, tenant_id)
        REFERENCES fairlane.senders (id, tenant_id),
    -- levels of service (docs/decisions/0020): segments the normal and bulk levels are owed by their minimum
    -- share of the queue (settings.level_minimum_share) while higher levels went first (claim_v4)
    normal_owed double precision NOT NULL DEFAULT 0,
    bulk_owed double precision NOT NULL DEFAULT 0
) WITH (fillfactor = 50);
CREATE INDEX queues_destination_id_idx ON fairlane.queues (destination_id);
-- The claim's entry point: the active queues of a destination in virtual-time order.
CREATE INDEX queues_claim_idx ON fairlane.queues (destination_id, vtime, id) WHERE queued_count > 0;

-- Messages (docs/decisions/0014): one table, the live and the finished apart. A message is live while
-- scheduled, queued or sending, in messages_live: the claim path (ready index, head probes, leases, expiry)
-- touches only this partition, so it stays the size of the backlog whatever the history. When it reaches a
-- finished status (sent, delivered, undelivered, failed, expired, canceled) fairlane.finish_v1 moves it into
-- messages_finished, partitioned by the time it finished; retention drops whole partitions of it
-- (drop_history_partition_v1). finished_at is the partition key: NULL while live.
CREATE SEQUENCE fairlane.messages_id_seq;
CREATE TABLE fairlane.messages (
    id bigint NOT NULL DEFAULT nextval('fairlane.messages_id_seq'),
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
    -- a queued message waiting out a retry delay or a throttle may not be claimed before this
    available_at timestamptz,
    -- the claim that leased a sending message (until lease_until)
    claim_id bigint,
    -- when it reached a finished status (the partition key); NULL while live
    finished_at timestamptz,
    -- the number of its events so far: the sequence number of its latest event (status callbacks carry it)
    event_count integer NOT NULL DEFAULT 0,
    -- its level of service (docs/decisions/0020): 0 high, 1 normal, 2 bulk; a queue's ready messages go in
    -- this order, then oldest first
    priority smallint NOT NULL DEFAULT 1 CONSTRAINT messages_priority_check CHECK (priority BETWEEN 0 AND 2)
) PARTITION BY LIST (finished_at);

CREATE TABLE fairlane.messages_live PARTITION OF fairlane.messages (
    CONSTRAINT messages_live_pkey PRIMARY KEY (id),
    CONSTRAINT messages_live_status_check CHECK (status IN ('scheduled', 'queued', 'sending')),
    -- a message's tenant is its queue's tenant
    CONSTRAINT messages_live_queue_id_tenant_id_fkey FOREIGN KEY (queue_id, tenant_id)
        REFERENCES fairlane.queues (id, tenant_id)
) FOR VALUES IN (NULL)
-- a queue's churn: every row is updated twice and deleted within minutes, so vacuum early (at 2% dead rows,
-- not the default 20%) to keep the claim's index probes off dead entries
WITH (fillfactor = 90, autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.02,
      autovacuum_analyze_scale_factor = 0.05);
-- The claim path: the ready rows of one queue, highest level of service first, then in FIFO order; nothing else.
CREATE INDEX messages_ready_idx ON fairlane.messages_live (queue_id, priority, id) WHERE status = 'queued';
CREATE INDEX messages_scheduled_idx ON fairlane.messages_live (send_at) WHERE status = 'scheduled';
CREATE INDEX messages_live_tenant_id_idx ON fairlane.messages_live (tenant_id, id);
CREATE INDEX messages_lease_idx ON fairlane.messages_live (lease_until) WHERE status = 'sending';
-- The expiry sweeper (expire_v1): messages waiting past their validity.
CREATE INDEX messages_expiry_idx ON fairlane.messages_live (expires_at) WHERE status IN ('queued', 'scheduled');
-- A tenant's scheduled and sending messages, listed by status (GET /v1/messages?status=).
CREATE INDEX messages_scheduled_tenant_idx ON fairlane.messages_live (tenant_id, id) WHERE status = 'scheduled';
CREATE INDEX messages_sending_tenant_idx ON fairlane.messages_live (tenant_id, id) WHERE status = 'sending';

CREATE TABLE fairlane.messages_finished PARTITION OF fairlane.messages (
    CONSTRAINT messages_finished_status_check CHECK (status IN (
        'sent', 'delivered', 'undelivered', 'failed', 'expired', 'canceled'))
) DEFAULT PARTITION BY RANGE (finished_at);
-- Partitioned indexes: every partition of messages_finished gets its own.
CREATE INDEX messages_finished_id_idx ON fairlane.messages_finished (id);
CREATE INDEX messages_finished_tenant_id_idx ON fairlane.messages_finished (tenant_id, id);
-- Delivery receipts name the provider's id.
CREATE INDEX messages_finished_provider_id_idx ON fairlane.messages_finished (provider_id)
    WHERE provider_id IS NOT NULL;
-- A tenant's list filtered by status or destination (GET /v1/messages): newest first per queue and status, so
-- a page reads a few index entries per queue, never the tenant's whole history.
CREATE INDEX messages_finished_queue_id_status_idx ON fairlane.messages_finished (queue_id, status, id);
-- Rows finished at a time no partition covers (the maintenance leader was away): moved into their
-- partition when it is made. Normally empty.
CREATE TABLE fairlane.messages_finished_default PARTITION OF fairlane.messages_finished DEFAULT;

-- Every status change of a message (SPEC §4), kept with the message: the events of a live message in
-- message_events_live, moved with the message into message_events_finished (partitioned like
-- messages_finished, by the message's finished_at) when it finishes.
CREATE SEQUENCE fairlane.message_events_id_seq;
CREATE TABLE fairlane.message_events (
    id bigint NOT NULL DEFAULT nextval('fairlane.message_events_id_seq'),
    -- no foreign key: only fairlane's functions write events
    message_id bigint NOT NULL,
    tenant_id bigint NOT NULL,
    status text NOT NULL CONSTRAINT message_events_status_check CHECK (status IN (
        'scheduled', 'queued', 'sending', 'sent', 'delivered', 'undelivered',
        'failed', 'expired', 'canceled')),
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    detail jsonb,
    -- the message's finished_at (the partition key); NULL while the message is live
    finished_at timestamptz
) PARTITION BY LIST (finished_at);
CREATE TABLE fairlane.message_events_live PARTITION OF fairlane.message_events (
    CONSTRAINT message_events_live_pkey PRIMARY KEY (id)
) FOR VALUES IN (NULL)
WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.02,
      autovacuum_analyze_scale_factor = 0.05);
CREATE INDEX message_events_live_message_id_idx ON fairlane.message_events_live (message_id, id);
CREATE TABLE fairlane.message_events_finished PARTITION OF fairlane.message_events
    DEFAULT PARTITION BY RANGE (finished_at);
CREATE INDEX message_events_finished_message_id_idx ON fairlane.message_events_finished (message_id, id);
CREATE TABLE fairlane.message_events_finished_default PARTITION OF fairlane.message_events_finished DEFAULT;

-- The partitions of messages_finished and message_events_finished (made in pairs with the same bounds by
-- make_history_partition_v1, ahead of time, and dropped in pairs once past the retention by
-- drop_history_partition_v1).
CREATE TABLE fairlane.history_partitions (
    lower timestamptz PRIMARY KEY,
    upper timestamptz NOT NULL,
    CONSTRAINT history_partitions_bounds_check CHECK (upper > lower)
);

-- Settings of the whole service, one row.
CREATE TABLE fairlane.settings (
    one boolean PRIMARY KEY DEFAULT true CONSTRAINT settings_one_check CHECK (one),
    -- how long a finished message and its events are kept (`[retention] finished_messages`)
    retention_seconds integer NOT NULL DEFAULT 2592000
        CONSTRAINT settings_retention_seconds_check CHECK (retention_seconds BETWEEN 60 AND 315360000),
    -- status callback URLs (`[callbacks]`, docs/decisions/0017): networks they may reach although not public
    -- (`allow_networks`), and whether plain http is allowed (`allow_http`); https to public addresses otherwise
    callback_allow_networks cidr[] NOT NULL DEFAULT '{}',
    callback_allow_http boolean NOT NULL DEFAULT false,
    -- at most this many scheduled messages per tenant (`[limits] scheduled_per_tenant`)
    scheduled_per_tenant integer NOT NULL DEFAULT 100000
        CONSTRAINT settings_scheduled_per_tenant_check CHECK (scheduled_per_tenant BETWEEN 1 AND 100000000),
    -- levels of service (`[levels] minimum_share`): the share of a queue's service each lower level (normal,
    -- bulk) keeps while it has messages waiting behind higher ones
    level_minimum_share numeric NOT NULL DEFAULT 0.1
        CONSTRAINT settings_level_minimum_share_check CHECK (level_minimum_share BETWEEN 0 AND 0.5)
);
INSERT INTO fairlane.settings DEFAULT VALUES;

-- Usage that outlives retention (fairlane.usage_daily): messages and segments per tenant, destination,
-- sender, UTC day of finishing and status, counted as messages finish (finish_v1) and as receipts move
-- them from sent to delivered or undelivered (receipt_v1). Each row is split into slots (by backend), so
-- concurrent dispatchers finishing one tenant's messages update different rows.
-- No foreign keys: a check per counted row would cost every completion, and the ids are a queue's, which
-- is never deleted.
CREATE TABLE fairlane.usage_counters (
    tenant_id bigint NOT NULL,
    destination_id bigint NOT NULL,
    sender_id bigint NOT NULL,
    day date NOT NULL,
    status text NOT NULL CONSTRAINT usage_counters_status_check CHECK (status IN (
        'sent', 'delivered', 'undelivered', 'failed', 'expired', 'canceled')),
    slot smallint NOT NULL CONSTRAINT usage_counters_slot_check CHECK (slot BETWEEN 0 AND 7),
    messages bigint NOT NULL DEFAULT 0,
    segments bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, destination_id, sender_id, day, status, slot)
) WITH (fillfactor = 70);

CREATE TABLE fairlane.idempotency_keys (
    tenant_id bigint NOT NULL REFERENCES fairlane.tenants (id) ON DELETE CASCADE,
    key text NOT NULL,
    request_hash text NOT NULL,
    message_id bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);
-- Pruning keys older than a day (prune_v1).
CREATE INDEX idempotency_keys_created_at_idx ON fairlane.idempotency_keys (created_at);

-- Insert-only entry point for batch jobs (and fairlane.submit). Rows live only until the end of their
-- statement (the trigger accept_outbox_v2 turns them into messages and deletes them), so the table is
-- unlogged and always reads empty.
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
    row_number bigint GENERATED ALWAYS AS IDENTITY,
    priority text
);
CREATE INDEX outbox_row_number_idx ON fairlane.outbox (row_number);

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
    created_at timestamptz NOT NULL DEFAULT now(),
    -- the JSON body, built when the event was written (record_events_v1): the same on every attempt
    payload text NOT NULL
) WITH (fillfactor = 80);
-- The sender's claim takes each tenant's due rows in turn (docs/decisions/0017): per tenant, oldest due first.
CREATE INDEX callbacks_tenant_due_idx ON fairlane.callbacks (tenant_id, next_attempt_at)
    WHERE delivered_at IS NULL AND abandoned_at IS NULL;
-- Pruning finished callbacks (prune_v1).
CREATE INDEX callbacks_finished_idx ON fairlane.callbacks ((coalesce(delivered_at, abandoned_at)))
    WHERE delivered_at IS NOT NULL OR abandoned_at IS NOT NULL;

CREATE SEQUENCE fairlane.claims_id_seq;
-- Moves on whenever fair shares may have changed (a queue joined or left, configuration changed).
CREATE SEQUENCE fairlane.shares_seq;

-- One row per destination: the value of fairlane.shares_seq its queues' portions were last computed from,
-- and when (claim_v2 recomputes them when shares_seq has moved on, at most every 100 ms). Updated by claims:
-- fillfactor 50 and no index but the key keep its updates HOT.
CREATE TABLE fairlane.destination_state (
    destination_id bigint PRIMARY KEY REFERENCES fairlane.destinations (id) ON DELETE CASCADE,
    portions_version bigint NOT NULL DEFAULT 0,
    portions_at timestamptz,
    -- the portions leave out queues whose sender's quota window is spent until then (the earliest reset among
    -- them): the claim recomputes them at that time (refresh_portions_v2)
    portions_until timestamptz
) WITH (fillfactor = 50);

-- The destination's token bucket in slices (docs/decisions/0011): each of a destination's first n slices
-- (slice_count_v1) is a token bucket of rate / n and capacity / n, so together they never let through more
-- than the destination's bucket would; concurrent claimers of one destination lock different slices. With
-- its AIMD factor (throttle_v2), the highest virtual time it has served (the destination's virtual time is
-- the highest of its slices') and its recent rate. Small rows, one locked per concurrent claimer:
-- fillfactor 50 and no index but the key keep updates HOT.
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

-- The use of quota windows (docs/decisions/0020): one row per window a destination or a sender carries
-- (destinations.per_minute, per_hour, per_day and senders' alike; sync_windows_v1 keeps the rows and copies the
-- quota, time zone and kind). counts[1] is the segments claimed in the interval starting at counted_at, counts[2]
-- in the one before, and so on: one interval per calendar period, or 61 intervals of a sixtieth of the period
-- for a sliding window (window_state_v1, window_counts_v1). A window that could not take a message is closed
-- until closed_until (its reset), so what is left of it is never polled for. Locked by claims in id order after
-- their bucket slices: fillfactor 50 and no index on the changing columns keep updates HOT.
CREATE TABLE fairlane.quota_windows (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    destination_id bigint REFERENCES fairlane.destinations (id) ON DELETE CASCADE,
    sender_id bigint REFERENCES fairlane.senders (id) ON DELETE CASCADE,
    period text NOT NULL CONSTRAINT quota_windows_period_check CHECK (period IN ('minute', 'hour', 'day')),
    quota integer NOT NULL CONSTRAINT quota_windows_quota_check CHECK (quota > 0),
    reset_timezone text NOT NULL,
    sliding boolean NOT NULL,
    counts bigint[] NOT NULL DEFAULT '{}',
    counted_at timestamptz,
    closed_until timestamptz,
    CONSTRAINT quota_windows_owner_check CHECK ((destination_id IS NULL) <> (sender_id IS NULL)),
    CONSTRAINT quota_windows_destination_id_period_key UNIQUE (destination_id, period),
    CONSTRAINT quota_windows_sender_id_period_key UNIQUE (sender_id, period)
) WITH (fillfactor = 50);

-- The parts of the messages sent over SMPP (docs/decisions/0016): one row per submit_sm the carrier accepted,
-- keyed by the id it gave (complete_v1 keeps the first part's as the message's provider_id; every part's is
-- here), written by the gateway before the message's completion (record_parts_v1). Delivery receipts come per
-- part (part_receipt_v1) and may come first (from another bind, or before the part's row): a receipt is kept
-- under its id, message_id NULL until the part's row arrives; once every part of a message has one the
-- message's receipt is applied (settle_parts_v1), or waits while the message is still live (`waiting`,
-- settle_waiting_parts_v1). Rows older than the retention of finished messages go (prune_message_parts_v1).
CREATE TABLE fairlane.message_parts (
    gateway_id bigint NOT NULL REFERENCES fairlane.gateways (id) ON DELETE CASCADE,
    provider_id text NOT NULL,
    message_id bigint,
    part smallint,
    parts smallint CONSTRAINT message_parts_parts_check CHECK (part BETWEEN 1 AND parts),
    -- the part's receipt: delivered or undelivered, with the carrier's stat and err; how many came
    status text CONSTRAINT message_parts_status_check CHECK (status IN ('delivered', 'undelivered')),
    error_code text,
    receipts integer NOT NULL DEFAULT 0,
    -- every part has its receipt but the message is still live (the receipts overtook its completion)
    waiting boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway_id, provider_id)
) WITH (fillfactor = 90);
CREATE INDEX message_parts_message_id_idx ON fairlane.message_parts (message_id);
CREATE INDEX message_parts_created_at_idx ON fairlane.message_parts (created_at);
CREATE INDEX message_parts_waiting_idx ON fairlane.message_parts (message_id) WHERE waiting;
