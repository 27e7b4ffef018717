-- Queries of the outbox benchmark (psycopg, %(name)s parameters).

-- name: create_bare_table
-- The baseline: a plain table with the outbox's columns, no constraints, indexes or triggers.
CREATE TABLE IF NOT EXISTS public.bench_bare (tenant text, recipient text, body text)

-- name: truncate_bare_table
-- Empty the baseline table between runs.
TRUNCATE public.bench_bare

-- name: insert_select_bare
-- INSERT ... SELECT of n generated rows into the bare table.
INSERT INTO public.bench_bare (tenant, recipient, body)
SELECT 'bench' || (i %% %(tenants)s), '+1555' || lpad(i::text, 7, '0'), 'Your code is ' || i
FROM generate_series(1, %(rows)s) i

-- name: insert_select_outbox
-- INSERT ... SELECT of the same rows into fairlane.outbox.
INSERT INTO fairlane.outbox (tenant, recipient, body)
SELECT 'bench' || (i %% %(tenants)s), '+1555' || lpad(i::text, 7, '0'), 'Your code is ' || i
FROM generate_series(1, %(rows)s) i

-- name: copy_bare
-- COPY into the bare table.
COPY public.bench_bare (tenant, recipient, body) FROM STDIN

-- name: copy_outbox
-- COPY into fairlane.outbox.
COPY fairlane.outbox (tenant, recipient, body) FROM STDIN

-- name: message_count
-- Messages accepted so far.
SELECT count(*) FROM fairlane.messages

-- name: create_message_shaped_table
-- The floor: a table shaped like fairlane.messages (columns, defaults, indexes), without rules.
CREATE TABLE IF NOT EXISTS public.bench_messages (LIKE fairlane.messages_live INCLUDING DEFAULTS INCLUDING INDEXES)

-- name: truncate_message_shaped_table
-- Empty the floor table between runs.
TRUNCATE public.bench_messages

-- name: insert_select_message_shaped
-- INSERT ... SELECT of the same rows, already resolved, into the message-shaped table.
INSERT INTO public.bench_messages (tenant_id, queue_id, status, recipient, body, segments, encoding, expires_at)
SELECT i %% %(tenants)s, i %% %(tenants)s, 'queued', '+1555' || lpad(i::text, 7, '0'), 'Your code is ' || i,
       1, 'GSM-7', now() + interval '10 hours'
FROM generate_series(1, %(rows)s) i

-- name: create_raw_queue
-- The raw SKIP LOCKED baseline: a bare FIFO table.
CREATE TABLE IF NOT EXISTS public.bench_raw (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant integer,
                                             body text)

-- name: raw_depth
-- Rows in the raw queue.
SELECT count(*) FROM public.bench_raw

-- name: raw_fill
-- Add %(rows)s rows to the raw queue: nine in ten for tenant 0, the rest over 999 tenants.
INSERT INTO public.bench_raw (tenant, body)
SELECT CASE WHEN i %% 10 = 0 THEN i %% 999 + 1 ELSE 0 END, 'hello ' || i FROM generate_series(1, %(rows)s) i

-- name: raw_claim_delete
-- Claim and delete a batch of the raw queue in FIFO order (asyncpg).
DELETE FROM public.bench_raw
WHERE id = ANY (ARRAY(SELECT id FROM public.bench_raw ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED))
RETURNING id

-- name: queued
-- Messages queued in the scratch database.
SELECT coalesce(sum(queued_count), 0) FROM fairlane.queues

-- name: fill
-- Submit %(rows)s messages through the outbox: nine in ten from tenant big, the rest over 999 tenants.
INSERT INTO fairlane.outbox (tenant, recipient, body)
SELECT CASE WHEN i %% 10 = 0 THEN 'tenant' || (i %% 999 + 1) ELSE 'big' END,
       '+1555' || lpad((i %% 10000000)::text, 7, '0'), 'hello ' || i
FROM generate_series(1, %(rows)s) i

-- name: destination_id
-- The benchmark destination.
SELECT id FROM fairlane.destinations WHERE code = 'BENCH'

-- name: claim
-- Claim a batch of the benchmark destination (asyncpg).
SELECT message_id, claim_id FROM fairlane.claim_v2($1, $2, 60)

-- name: complete_sent
-- Complete a claim as sent (asyncpg).
SELECT fairlane.complete_v1($1, ids, array_fill('sent'::text, ARRAY[n]), array_fill(NULL::text, ARRAY[n]),
                            array_fill(NULL::text, ARRAY[n]), array_fill(NULL::text, ARRAY[n]),
                            array_fill(NULL::float8, ARRAY[n]), 5)
FROM (SELECT $2::bigint[] AS ids, cardinality($2::bigint[]) AS n) batch

-- name: submit_light
-- One message from tenant light (psycopg).
SELECT fairlane.submit(tenant => 'light', recipient => '+15557654321', body => 'Your code is 1234')

-- name: flood
-- %(rows)s messages from tenant flood (psycopg).
INSERT INTO fairlane.outbox (tenant, recipient, body)
SELECT 'flood', '+1555' || lpad(i::text, 7, '0'), 'Big sale ' || i FROM generate_series(1, %(rows)s) i

-- name: light_waits
-- Queue wait of tenant light's messages: p50 and p99 seconds from acceptance to claim (psycopg).
SELECT count(*) AS messages,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY w) AS p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY w) AS p99
FROM (
    SELECT extract(epoch FROM e.at - m.created_at) AS w
    FROM fairlane.messages m
    JOIN fairlane.tenants t ON t.id = m.tenant_id
    JOIN fairlane.message_events e ON e.message_id = m.id AND e.status = 'sending'
    WHERE t.name = 'light'
) waits

-- name: sent_count
-- Messages that reached the gateway (psycopg).
SELECT count(*) FROM fairlane.messages WHERE status IN ('sent', 'delivered', 'undelivered')

-- name: spread
-- %(rows)s messages spread evenly over tenants t0 .. t999 (psycopg).
INSERT INTO fairlane.outbox (tenant, recipient, body)
SELECT 't' || (i %% 1000), '+1666' || lpad(i::text, 7, '0'), 'hello' FROM generate_series(1, %(rows)s) i

-- name: create_lifecycle_tables
-- The lifecycle floor: one message table and one event table as a plain single-table design keeps them
-- (fairlane's columns; its indexes on the claim path, schedules, leases, tenants and provider ids; no
-- triggers, partitions or history), claimed FIFO from one queue with the same status changes and events.
CREATE TABLE IF NOT EXISTS public.bench_lifecycle (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, tenant_id bigint NOT NULL, queue_id bigint NOT NULL,
    status text NOT NULL, recipient text NOT NULL, body text NOT NULL, segments integer NOT NULL,
    encoding text NOT NULL, send_at timestamptz, expires_at timestamptz NOT NULL, status_callback text,
    idempotency_key text, attempts integer NOT NULL DEFAULT 0, lease_until timestamptz, provider_id text,
    error_code text, error_message text, created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(), available_at timestamptz, claim_id bigint
) WITH (fillfactor = 90);
CREATE INDEX IF NOT EXISTS bench_lifecycle_ready_idx ON public.bench_lifecycle (queue_id, id) WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS bench_lifecycle_scheduled_idx ON public.bench_lifecycle (send_at) WHERE status = 'scheduled';
CREATE INDEX IF NOT EXISTS bench_lifecycle_tenant_idx ON public.bench_lifecycle (tenant_id, id);
CREATE INDEX IF NOT EXISTS bench_lifecycle_lease_idx ON public.bench_lifecycle (lease_until) WHERE status = 'sending';
CREATE INDEX IF NOT EXISTS bench_lifecycle_provider_idx ON public.bench_lifecycle (provider_id)
    WHERE provider_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS public.bench_lifecycle_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, message_id bigint NOT NULL, tenant_id bigint NOT NULL,
    status text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp(), detail jsonb
);
CREATE INDEX IF NOT EXISTS bench_lifecycle_events_message_idx ON public.bench_lifecycle_events (message_id, id)

-- name: lifecycle_depth
-- Rows queued in the lifecycle floor.
SELECT count(*) FROM public.bench_lifecycle WHERE queue_id = 1 AND status = 'queued'

-- name: lifecycle_fill
-- Add %(rows)s queued rows to the lifecycle floor: nine in ten for tenant 0, the rest over 999 tenants.
INSERT INTO public.bench_lifecycle (tenant_id, queue_id, status, recipient, body, segments, encoding, expires_at)
SELECT CASE WHEN i %% 10 = 0 THEN i %% 999 + 1 ELSE 0 END, 1, 'queued', '+1555' || lpad(i::text, 7, '0'),
       'hello ' || i, 1, 'GSM-7', now() + interval '10 hours'
FROM generate_series(1, %(rows)s) i

-- name: lifecycle_claim
-- FIFO claim of a batch with the lifecycle's writes: status sending with a lease, one event each (asyncpg).
WITH picked AS (
    SELECT id FROM public.bench_lifecycle WHERE queue_id = 1 AND status = 'queued'
    ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
),
claimed AS (
    UPDATE public.bench_lifecycle m
    SET status = 'sending', claim_id = 1, lease_until = now() + interval '60 seconds', updated_at = now()
    FROM picked p WHERE m.id = p.id
    RETURNING m.id, m.tenant_id
),
events AS (
    INSERT INTO public.bench_lifecycle_events (message_id, tenant_id, status)
    SELECT c.id, c.tenant_id, 'sending' FROM claimed c
)
SELECT id FROM claimed

-- name: lifecycle_complete
-- Complete a batch of the lifecycle floor as sent: status, attempts, one event each (asyncpg).
WITH sent AS (
    UPDATE public.bench_lifecycle m
    SET status = 'sent', attempts = m.attempts + 1, claim_id = NULL, lease_until = NULL, updated_at = now()
    WHERE m.id = ANY ($1::bigint[]) AND m.status = 'sending'
    RETURNING m.id, m.tenant_id
),
events AS (
    INSERT INTO public.bench_lifecycle_events (message_id, tenant_id, status)
    SELECT s.id, s.tenant_id, 'sent' FROM sent s
)
SELECT count(*) FROM sent

-- name: soak_outbox
-- The soak's SQL submissions: one row into fairlane.outbox per tenant and recipient of the arrays (asyncpg).
INSERT INTO fairlane.outbox (tenant, recipient, body, validity_seconds)
SELECT s.tenant, s.recipient, 'Your soak code is ' || right(s.recipient, 7), $3
FROM unnest($1::text[], $2::text[]) AS s(tenant, recipient)

-- name: soak_relations
-- The soak's storage figures: each table of schema fairlane and each of their partitions (wherever those live),
-- with its total size (indexes and TOAST included), dead tuples and whether it is a partition (asyncpg).
WITH RECURSIVE tables AS (
    SELECT c.oid, false AS partition
    FROM pg_class c
    WHERE c.relnamespace = 'fairlane'::regnamespace AND c.relkind IN ('r', 'p', 'm')
      AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid)
    UNION ALL
    SELECT i.inhrelid, true FROM pg_inherits i JOIN tables t ON i.inhparent = t.oid
)
SELECT t.oid::regclass::text AS relation, pg_total_relation_size(t.oid) AS bytes,
       coalesce(s.n_dead_tup, 0) AS dead_tuples, t.partition
FROM tables t
LEFT JOIN pg_stat_user_tables s ON s.relid = t.oid

-- name: scale_flood
-- The scale bench's bulk: $2 messages from each tenant of $1 through fairlane.outbox, in one statement (asyncpg).
INSERT INTO fairlane.outbox (tenant, recipient, body)
SELECT t.tenant, '+1555' || lpad(i::text, 7, '0'), 'Big sale ' || i
FROM unnest($1::text[]) AS t(tenant), generate_series(1, $2) AS i

-- name: scale_backends
-- The PostgreSQL client backends serving this database except those whose application name is in $1 (asyncpg).
SELECT pid FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend' AND application_name <> ALL($1::text[])

-- name: scale_light_waits
-- Seconds from acceptance to the carrier's answer (the sent event) of tenant $1's messages: how many there are,
-- how many were sent, p50 and p99 (asyncpg).
SELECT count(*) AS messages, count(e.at) AS sent,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM e.at - m.created_at)) AS p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM e.at - m.created_at)) AS p99
FROM fairlane.messages m
JOIN fairlane.tenants t ON t.id = m.tenant_id
LEFT JOIN fairlane.message_events e ON e.message_id = m.id AND e.status = 'sent'
WHERE t.name = $1
