-- Revision 0006: the tables it adds (sql/tables.sql at this revision, the new parts).

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
    event_count integer NOT NULL DEFAULT 0
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
-- The claim path: the ready rows of one queue in FIFO order, and nothing else.
CREATE INDEX messages_ready_idx ON fairlane.messages_live (queue_id, id) WHERE status = 'queued';
CREATE INDEX messages_scheduled_idx ON fairlane.messages_live (send_at) WHERE status = 'scheduled';
CREATE INDEX messages_live_tenant_id_idx ON fairlane.messages_live (tenant_id, id);
CREATE INDEX messages_lease_idx ON fairlane.messages_live (lease_until) WHERE status = 'sending';
-- The expiry sweeper (expire_v1): messages waiting past their validity.
CREATE INDEX messages_expiry_idx ON fairlane.messages_live (expires_at) WHERE status IN ('queued', 'scheduled');

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
        CONSTRAINT settings_retention_seconds_check CHECK (retention_seconds BETWEEN 60 AND 315360000)
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

-- Pruning keys older than a day (prune_v1).
CREATE INDEX idempotency_keys_created_at_idx ON fairlane.idempotency_keys (created_at);
-- Pruning finished callbacks (prune_v1).
CREATE INDEX callbacks_finished_idx ON fairlane.callbacks ((coalesce(delivered_at, abandoned_at)))
    WHERE delivered_at IS NOT NULL OR abandoned_at IS NOT NULL;
