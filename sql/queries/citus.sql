-- The statements of the distributed (Citus) layout of docs/scale-out.md that touch tables distributed by
-- tenant_id: each names the tenant in every predicate (and inserts it as a parameter), so Citus routes it to
-- the tenant's shard alone. tests/integration/test_citus_plan.py checks their plans on plain PostgreSQL.
-- Not used by the service today.

-- name: submission_key
-- Submission: the tenant's idempotency key, if the request came before.
SELECT message_id, request_hash FROM fairlane.idempotency_keys WHERE tenant_id = $1 AND key = $2

-- name: submission_queue
-- Submission: the message's queue (tenant, destination, sender), counted one message more.
UPDATE fairlane.queues SET queued_count = queued_count + 1, queued_segments = queued_segments + $4
WHERE tenant_id = $1 AND destination_id = $2 AND sender_id = $3
RETURNING id

-- name: submission_message
-- Submission: the message itself.
INSERT INTO fairlane.messages (tenant_id, queue_id, status, recipient, body, segments, encoding, expires_at)
VALUES ($1, $2, 'queued', $3, $4, $5, 'GSM-7', $6)
RETURNING id

-- name: submission_event
-- Submission: its queued event.
INSERT INTO fairlane.message_events (tenant_id, message_id, status) VALUES ($1, $2, 'queued')

-- name: submission_idempotency
-- Submission: the key, when the request carried one.
INSERT INTO fairlane.idempotency_keys (tenant_id, key, request_hash, message_id) VALUES ($1, $2, $3, $4)

-- name: queue_probe
-- Claim, per chosen queue: its head messages that may go now (by level, then age), locked.
SELECT id, segments FROM fairlane.messages_live
WHERE tenant_id = $1 AND queue_id = $2 AND status = 'queued' AND (available_at IS NULL OR available_at <= $3)
ORDER BY priority, id LIMIT $4
FOR NO KEY UPDATE SKIP LOCKED

-- name: queue_lease
-- Claim, per chosen queue: lease the locked messages.
UPDATE fairlane.messages_live SET status = 'sending', lease_until = $3, claim_id = $4, attempts = attempts + 1
WHERE tenant_id = $1 AND id = ANY($2)

-- name: queue_served
-- Claim, per chosen queue: what it sent, off its counts.
UPDATE fairlane.queues SET queued_count = queued_count - $3, queued_segments = queued_segments - $4, vtime = $5
WHERE tenant_id = $1 AND id = $2
