-- Queries of the HTTP API's tenant endpoints (asyncpg, $n parameters). Messages are read through the
-- view fairlane.message_details as JSON, so every endpoint shows a message the same way.

-- name: authenticate
-- The tenant holding an API key (by its SHA-256 digest), unless the key was revoked.
SELECT t.id, t.name
FROM fairlane.api_keys k JOIN fairlane.tenants t ON t.id = k.tenant_id
WHERE k.key_hash = $1 AND k.revoked_at IS NULL

-- name: submit
-- Submit a JSON array of submissions, each judged on its own; one result row per item, in order.
SELECT ordinal, replayed, error, message FROM fairlane.submit_json_v1($1::jsonb)

-- name: message
-- One message of tenant $1, unless it finished longer ago than the retention (its partition may still be there).
SELECT to_jsonb(v) - 'tenant_id' AS message
FROM fairlane.message_details v
WHERE v.id = $2 AND v.tenant_id = $1
  AND (v.finished_at IS NULL
       OR v.finished_at > now() - (SELECT s.retention_seconds FROM fairlane.settings s) * interval '1 second')

-- name: messages
-- A page of tenant $1's messages, newest first, below id $5, optionally of one status and destination.
SELECT to_jsonb(v) - 'tenant_id' AS message
FROM fairlane.message_details v
WHERE v.tenant_id = $1
  AND (v.finished_at IS NULL
       OR v.finished_at > now() - (SELECT s.retention_seconds FROM fairlane.settings s) * interval '1 second')
  AND ($2::text IS NULL OR v.status = $2)
  AND ($3::text IS NULL OR v.destination = $3)
  AND v.id < $5
ORDER BY v.id DESC
LIMIT $4

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
-- Tenant $1's queues with depth, portion and projected drain time.
SELECT s.queue_id, s.destination, s.sender, s.depth, s.queued_segments, s.oldest_age_seconds::float8,
       s.portion::float8, s.projected_drain_seconds::float8, s.admission
FROM fairlane.queue_state s
JOIN fairlane.tenants t ON t.name = s.tenant
WHERE t.id = $1
ORDER BY s.queue_id

-- name: usage
-- Tenant $1's usage per UTC day from $2 to $3 (dates, inclusive), destination, sender and status.
SELECT u.day, u.destination, u.sender, u.status, u.messages, u.segments
FROM fairlane.usage_daily u
WHERE u.tenant = $1 AND u.day BETWEEN $2 AND $3
ORDER BY u.day, u.destination, u.sender, u.status
