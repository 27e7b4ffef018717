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
CREATE TABLE IF NOT EXISTS public.bench_messages (LIKE fairlane.messages INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING INDEXES)

-- name: truncate_message_shaped_table
-- Empty the floor table between runs.
TRUNCATE public.bench_messages

-- name: insert_select_message_shaped
-- INSERT ... SELECT of the same rows, already resolved, into the message-shaped table.
INSERT INTO public.bench_messages (tenant_id, queue_id, status, recipient, body, segments, encoding, expires_at)
SELECT i %% %(tenants)s, i %% %(tenants)s, 'queued', '+1555' || lpad(i::text, 7, '0'), 'Your code is ' || i,
       1, 'GSM-7', now() + interval '10 hours'
FROM generate_series(1, %(rows)s) i
