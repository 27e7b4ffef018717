-- Queries of the HTTP API's tenant endpoints (asyncpg, $n parameters). Messages are read through the
-- view fairlane.message_details as JSON, so every endpoint shows a message the same way.

-- name: authenticate
-- The tenant holding an API key (by its SHA-256 digest), unless the key was revoked.
SELECT t.id, t.name
FROM fairlane.api_keys k JOIN fairlane.tenants t ON t.id = k.tenant_id
WHERE k.key_hash = $1 AND k.revoked_at IS NULL

-- name: submit
-- Submit a JSON array of submissions, each judged on its own; one result row per item, in order.
SELECT ordinal, replayed, error, message FROM fairlane.submit_json_v2($1::jsonb)

-- name: message
-- One message of tenant $1 with its idempotency key, unless it finished longer ago than the retention (its partition may still be there).
SELECT to_jsonb(v) - 'tenant_id' || jsonb_build_object('idempotency_key', m.idempotency_key) AS message
FROM fairlane.message_details v
JOIN fairlane.messages m ON m.id = v.id
WHERE v.id = $2 AND v.tenant_id = $1
  AND (v.finished_at IS NULL
       OR v.finished_at > now() - (SELECT s.retention_seconds FROM fairlane.settings s) * interval '1 second')

-- name: by_idempotency_key
-- Tenant $1's message submitted with idempotency key $2 within the last 24 hours, with the key, as `message` shows it.
SELECT to_jsonb(v) - 'tenant_id' || jsonb_build_object('idempotency_key', k.key) AS message
FROM fairlane.idempotency_keys k
JOIN fairlane.message_details v ON v.id = k.message_id AND v.tenant_id = k.tenant_id
WHERE k.tenant_id = $1 AND k.key = $2 AND k.created_at > now() - interval '24 hours'
  AND (v.finished_at IS NULL
       OR v.finished_at > now() - (SELECT s.retention_seconds FROM fairlane.settings s) * interval '1 second')

-- name: messages
-- A page of tenant $1's messages, newest first, below id $5, optionally of one status ($2) and destination ($3): by index only.
-- Without a filter, through the tenant's id indexes (live and finished). With one, per queue of the tenant (of
-- that destination) and status, never walking the tenant's history (docs/decisions/0017): queued messages
-- through messages_ready_idx (per level), scheduled and sending ones through messages_scheduled_tenant_idx and
-- messages_sending_tenant_idx, finished ones through messages_finished_queue_id_status_idx in
-- the partitions still within the retention. Each branch runs only when the filter can match it. A filtered branch
-- states its range as row comparisons on its index's columns and orders by all of them (equalities would let the
-- planner drop them from the order and walk the id index instead, through the whole history, when it misjudges
-- how rare a status is).
WITH since AS (
    SELECT now() - s.retention_seconds * interval '1 second' AS at FROM fairlane.settings s
),
chosen_queues AS (
    SELECT q.id
    FROM fairlane.queues q
    JOIN fairlane.destinations d ON d.id = q.destination_id
    WHERE q.tenant_id = $1 AND ($3::text IS NULL OR d.code = $3::text)
),
finished_statuses AS (
    SELECT f.status
    FROM unnest(ARRAY['sent', 'delivered', 'undelivered', 'failed', 'expired', 'canceled']) AS f(status)
    WHERE $2::text IS NULL OR f.status = $2::text
),
page AS (
    (SELECT m.*
     FROM fairlane.messages m
     WHERE $2::text IS NULL AND $3::text IS NULL
       AND m.tenant_id = $1 AND m.id < $5
       AND (m.finished_at IS NULL OR m.finished_at > (SELECT since.at FROM since))
     ORDER BY m.id DESC
     LIMIT $4)
    UNION ALL
    (SELECT m.*
     FROM chosen_queues c
     CROSS JOIN (VALUES (0::smallint), (1::smallint), (2::smallint)) AS lv(priority)
     CROSS JOIN LATERAL (
         SELECT l.* FROM fairlane.messages_live l
         WHERE l.status = 'queued' AND (l.queue_id, l.priority, l.id) < (c.id, lv.priority, $5)
           AND (l.queue_id, l.priority) >= (c.id, lv.priority)
         ORDER BY l.queue_id DESC, l.priority DESC, l.id DESC
         LIMIT $4
     ) m
     WHERE ($2::text IS NOT NULL OR $3::text IS NOT NULL) AND coalesce($2::text, 'queued') = 'queued')
    UNION ALL
    (SELECT l.*
     FROM fairlane.messages_live l
     WHERE ($2::text IS NOT NULL OR $3::text IS NOT NULL) AND coalesce($2::text, 'scheduled') = 'scheduled'
       AND l.status = 'scheduled' AND (l.tenant_id, l.id) < ($1, $5) AND l.tenant_id >= $1
       AND l.queue_id IN (SELECT c.id FROM chosen_queues c)
     ORDER BY l.tenant_id DESC, l.id DESC
     LIMIT $4)
    UNION ALL
    (SELECT l.*
     FROM fairlane.messages_live l
     WHERE ($2::text IS NOT NULL OR $3::text IS NOT NULL) AND coalesce($2::text, 'sending') = 'sending'
       AND l.status = 'sending' AND (l.tenant_id, l.id) < ($1, $5) AND l.tenant_id >= $1
       AND l.queue_id IN (SELECT c.id FROM chosen_queues c)
     ORDER BY l.tenant_id DESC, l.id DESC
     LIMIT $4)
    UNION ALL
    (SELECT m.*
     FROM chosen_queues c
     CROSS JOIN finished_statuses f
     CROSS JOIN LATERAL (
         SELECT x.* FROM fairlane.messages_finished x
         WHERE (x.queue_id, x.status, x.id) < (c.id, f.status, $5) AND (x.queue_id, x.status) >= (c.id, f.status)
           AND x.finished_at > (SELECT since.at FROM since)
         ORDER BY x.queue_id DESC, x.status DESC, x.id DESC
         LIMIT $4
     ) m
     WHERE ($2::text IS NOT NULL OR $3::text IS NOT NULL)
       AND ($2::text IS NULL OR $2::text NOT IN ('scheduled', 'queued', 'sending')))
)
SELECT jsonb_build_object(
    'id', m.id, 'tenant', t.name, 'status', m.status, 'recipient', m.recipient, 'sender', s.address,
    'destination', d.code, 'body', m.body, 'segments', m.segments, 'encoding', m.encoding, 'attempts', m.attempts,
    'provider_id', m.provider_id, 'error_code', m.error_code, 'error_message', m.error_message,
    'status_callback', m.status_callback, 'created_at', m.created_at, 'updated_at', m.updated_at,
    'send_at', m.send_at, 'expires_at', m.expires_at, 'finished_at', m.finished_at,
    'idempotency_key', m.idempotency_key,
    'priority', CASE m.priority WHEN 0 THEN 'high' WHEN 2 THEN 'bulk' ELSE 'normal' END
) AS message
FROM (SELECT p.* FROM page p ORDER BY p.id DESC LIMIT $4) m
JOIN fairlane.tenants t ON t.id = m.tenant_id
JOIN fairlane.queues q ON q.id = m.queue_id
JOIN fairlane.senders s ON s.id = q.sender_id
JOIN fairlane.destinations d ON d.id = q.destination_id
ORDER BY m.id DESC

-- name: events
-- The status history of tenant $1's message $2, oldest first.
SELECT e.id, e.status, e.at, e.detail
FROM fairlane.message_events e
WHERE e.message_id = $2 AND e.tenant_id = $1
ORDER BY e.id

-- name: cancel
-- Cancel tenant $1's message $2 while it is queued or scheduled.
SELECT fairlane.cancel_v1($1, $2)

-- name: queues
-- Tenant $1's queues with depth, portion and projected drain time, as fairlane.queue_state shows them, but with the portions of the tenant's own destinations only (the view computes every destination's).
WITH portions AS (
    SELECT p.queue_id, p.portion
    FROM fairlane.queue_portions_v2(
        ARRAY(SELECT DISTINCT q.destination_id FROM fairlane.queues q WHERE q.tenant_id = $1), '{}') p
)
SELECT o.id AS queue_id, d.code AS destination, s.address AS sender, o.queued_count AS depth, o.queued_segments,
       round(extract(epoch FROM now() - head.created_at)::numeric, 3)::float8 AS oldest_age_seconds,
       round(p.portion::numeric, 3)::float8 AS portion,
       round(CASE WHEN o.queued_count = 0 THEN 0 ELSE o.queued_segments / nullif(p.portion, 0) END::numeric,
             1)::float8 AS projected_drain_seconds,
       CASE WHEN o.queued_count > 0 AND (p.portion <= 0 OR o.queued_segments / p.portion >= d.max_drain_seconds)
            THEN 'closed' ELSE 'open' END AS admission
FROM fairlane.queues o
JOIN fairlane.destinations d ON d.id = o.destination_id
JOIN fairlane.senders s ON s.id = o.sender_id
LEFT JOIN LATERAL (
    -- the oldest queued message, whatever its level (messages_ready_idx orders a queue by level, then age)
    SELECT m.created_at
    FROM (VALUES (0), (1), (2)) AS lv(priority)
    CROSS JOIN LATERAL (
        SELECT m.id, m.created_at FROM fairlane.messages_live m
        WHERE m.queue_id = o.id AND m.status = 'queued' AND m.priority = lv.priority
        ORDER BY m.priority, m.id
        LIMIT 1
    ) m
    ORDER BY m.id
    LIMIT 1
) head ON true
LEFT JOIN portions p ON p.queue_id = o.id
WHERE o.tenant_id = $1
ORDER BY o.id

-- name: usage
-- Tenant $1's usage per UTC day from $2 to $3 (dates, inclusive), destination, sender and status.
SELECT u.day, u.destination, u.sender, u.status, u.messages, u.segments
FROM fairlane.usage_daily u
WHERE u.tenant = $1 AND u.day BETWEEN $2 AND $3
ORDER BY u.day, u.destination, u.sender, u.status
