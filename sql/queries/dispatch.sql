-- Queries of the dispatcher (asyncpg, $n parameters).

-- name: destinations
-- Every destination with its gateway, for the dispatcher's per-destination loops.
SELECT d.id, d.code, d.rate::float8 AS rate, d.burst, g.name AS gateway, g.kind, g.url,
       g.timeout_seconds::float8 AS timeout_seconds, g.max_in_flight
FROM fairlane.destinations d JOIN fairlane.gateways g ON g.id = d.gateway_id
ORDER BY d.id

-- name: claim
-- Claim up to $2 messages of destination $1 with a lease of $3 seconds.
SELECT message_id, claim_id, tenant, destination, sender, recipient, body, segments, expires_at, attempts
FROM fairlane.claim_v2($1, $2, $3)

-- name: complete
-- Record the gateway's answers for one claim.
SELECT fairlane.complete_v1($1, $2, $3, $4, $5, $6, $7, $8)

-- name: throttle
-- Halve the destination's effective rate after a 429.
SELECT fairlane.throttle_v2($1)

-- name: ready
-- Whether destination $1 has a message that could be claimed now (after an empty claim: out of tokens, or
-- nothing ready?): an eligible queue whose head has a ready message.
SELECT EXISTS (
    SELECT FROM fairlane.queues q
    WHERE q.destination_id = $1 AND q.queued_count > 0 AND (q.not_before IS NULL OR q.not_before <= now())
      AND EXISTS (
          SELECT FROM fairlane.messages_live m
          WHERE m.queue_id = q.id AND m.status = 'queued' AND (m.available_at IS NULL OR m.available_at <= now())
      )
)

-- name: queue_waits
-- Seconds each of the given messages waited from acceptance until now (the claim), for the metrics.
SELECT extract(epoch FROM now() - m.created_at)::float8 FROM fairlane.messages_live m WHERE m.id = ANY($1::bigint[])
