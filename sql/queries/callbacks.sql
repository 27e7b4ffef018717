-- Queries of the status callback sender (asyncpg, $n parameters). SPEC §4 "Status callbacks";
-- docs/decisions/0017 for the fair claim and the circuit breaker.

-- name: claim_callbacks
-- Lease up to $1 due callbacks for $2 seconds (one more attempt each), taking tenants in turn, each at most $3 in flight (tenant ids $4 have $5 in flight here).
WITH RECURSIVE pending AS (
    -- the tenants with pending callbacks, each with its earliest next attempt: a skip scan of
    -- callbacks_tenant_due_idx, one probe per such tenant (tenants without any cost nothing)
    (SELECT c.tenant_id, c.next_attempt_at
     FROM fairlane.callbacks c
     WHERE c.delivered_at IS NULL AND c.abandoned_at IS NULL
     ORDER BY c.tenant_id, c.next_attempt_at
     LIMIT 1)
    UNION ALL
    SELECT n.tenant_id, n.next_attempt_at
    FROM pending p
    CROSS JOIN LATERAL (
        SELECT c.tenant_id, c.next_attempt_at
        FROM fairlane.callbacks c
        WHERE c.tenant_id > p.tenant_id AND c.delivered_at IS NULL AND c.abandoned_at IS NULL
        ORDER BY c.tenant_id, c.next_attempt_at
        LIMIT 1
    ) n
),
busy AS (
    SELECT b.tenant_id, b.in_flight FROM unnest($4::bigint[], $5::integer[]) AS b(tenant_id, in_flight)
),
candidates AS MATERIALIZED (
    -- the tenants with due rows and free slots: each one's oldest due rows, no more than its free slots,
    -- locked as they are read (rows another sender holds are skipped, so concurrent senders take different rows)
    SELECT c.event_id, c.next_attempt_at,
           row_number() OVER (PARTITION BY p.tenant_id ORDER BY c.next_attempt_at, c.event_id) AS turn
    FROM pending p
    LEFT JOIN busy b ON b.tenant_id = p.tenant_id
    CROSS JOIN LATERAL (
        SELECT c.event_id, c.next_attempt_at
        FROM fairlane.callbacks c
        WHERE c.tenant_id = p.tenant_id AND c.delivered_at IS NULL AND c.abandoned_at IS NULL
          AND c.next_attempt_at <= now()
        ORDER BY c.next_attempt_at
        LIMIT greatest(0, least($1::integer, $3::integer - coalesce(b.in_flight, 0)))
        FOR UPDATE SKIP LOCKED
    ) c
    WHERE p.next_attempt_at <= now() AND coalesce(b.in_flight, 0) < $3::integer
),
chosen AS MATERIALIZED (
    -- round robin: every tenant's first row, then every tenant's second, ...; the longest waiting first in a turn
    SELECT ca.event_id FROM candidates ca ORDER BY ca.turn, ca.next_attempt_at, ca.event_id LIMIT $1
),
leased AS (
    -- the lease: not due again until the post and its recording are long over
    UPDATE fairlane.callbacks c
    SET attempts = c.attempts + 1, next_attempt_at = now() + make_interval(secs => $2::float8)
    FROM chosen ch
    WHERE c.event_id = ch.event_id
    RETURNING c.event_id, c.tenant_id, c.url, c.attempts, c.created_at, c.payload
)
-- the body was built with the event (fairlane.record_events_v1): every attempt sends the same bytes; signed
-- with the tenant's secret and, during a rotation's grace period, with the one before it too
SELECT l.event_id, l.tenant_id, l.url, l.attempts, l.created_at,
       CASE WHEN t.id IS NULL THEN ARRAY[]::text[]
            WHEN t.previous_signing_secret_until > now() THEN ARRAY[t.signing_secret, t.previous_signing_secret]
            ELSE ARRAY[t.signing_secret] END AS signing_secrets,
       l.payload
FROM leased l
LEFT JOIN fairlane.tenants t ON t.id = l.tenant_id
ORDER BY l.event_id

-- name: delivered
-- Mark the callbacks of event ids $1 delivered (a receiver answered 2xx).
UPDATE fairlane.callbacks
SET delivered_at = now()
WHERE event_id = ANY($1::bigint[]) AND delivered_at IS NULL

-- name: retry_later
-- Failed posts: row $1[i] is due again in $2[i] seconds with error $3[i], or abandoned once older than $4 seconds; one not attempted ($5[i] false) gives its attempt back.
UPDATE fairlane.callbacks c
SET last_error = f.error,
    attempts = c.attempts - CASE WHEN f.attempted THEN 0 ELSE 1 END,
    next_attempt_at = CASE WHEN c.created_at > now() - make_interval(secs => $4::float8)
                           THEN now() + make_interval(secs => f.delay) ELSE c.next_attempt_at END,
    abandoned_at = CASE WHEN c.created_at <= now() - make_interval(secs => $4::float8) THEN now() END
FROM unnest($1::bigint[], $2::float8[], $3::text[], $5::boolean[]) AS f(event_id, delay, error, attempted)
WHERE c.event_id = f.event_id AND c.delivered_at IS NULL AND c.abandoned_at IS NULL
RETURNING c.event_id, c.abandoned_at IS NOT NULL AS abandoned

-- name: postpone_endpoint
-- An open circuit: tenant $1's pending callbacks to endpoint $2 (lower-case scheme://authority) due within $3 seconds wait until then.
UPDATE fairlane.callbacks c
SET next_attempt_at = now() + make_interval(secs => $3::float8)
WHERE c.tenant_id = $1 AND c.delivered_at IS NULL AND c.abandoned_at IS NULL
  AND c.next_attempt_at < now() + make_interval(secs => $3::float8)
  AND lower(substring(c.url FROM '^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*')) = $2
