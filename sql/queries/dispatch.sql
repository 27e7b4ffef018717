-- Queries of the dispatcher (asyncpg, $n parameters).

-- name: destinations
-- Every destination with its gateway and send slot, for the dispatcher's per-destination loops.
SELECT d.id, d.code, d.rate::float8 AS rate, d.burst, g.name AS gateway, g.kind, g.url,
       g.timeout_seconds::float8 AS timeout_seconds, g.max_in_flight,
       fairlane.send_slot_v1(d.rate, d.burst) AS send_slot_seconds
FROM fairlane.destinations d JOIN fairlane.gateways g ON g.id = d.gateway_id
ORDER BY d.id

-- name: claim
-- Claim up to $2 messages of destination $1 with a lease of $3 seconds; in how many seconds to claim next
-- (NULL: when something new comes); how long the claim took in the database (the rest of the round trip is
-- the way back, which a stalled client may have spent asleep); and the seconds each message waited from
-- acceptance until the claim (for the metrics).
SELECT c.messages, greatest(extract(epoch FROM c.ready_at - clock_timestamp()), 0)::float8 AS ready_in,
       extract(epoch FROM clock_timestamp() - statement_timestamp())::float8 AS took,
       ARRAY(SELECT extract(epoch FROM now() - m.created_at)::float8
             FROM unnest(c.messages) cm JOIN fairlane.messages_live m ON m.id = cm.message_id) AS waits
FROM fairlane.claim_v4($1, $2, $3) c

-- name: waits
-- The seconds messages $1 have waited since their acceptance (the claim's, when its own join missed one).
SELECT ARRAY(SELECT extract(epoch FROM now() - m.created_at)::float8
             FROM fairlane.messages_live m WHERE m.id = ANY($1::bigint[]))

-- name: complete
-- Record the gateway's answers for one claim.
SELECT fairlane.complete_v1($1, $2, $3, $4, $5, $6, $7, $8)

-- name: leased
-- How many of messages $2 are still leased under claim $1: none once its completion landed or its lease was rescued.
SELECT count(*) FROM fairlane.messages_live m WHERE m.id = ANY($2::bigint[]) AND m.claim_id = $1 AND m.status = 'sending'

-- name: throttle
-- Halve the destination's effective rate after a 429.
SELECT fairlane.throttle_v2($1)

-- name: return_tokens
-- Give destination $1's bucket back the tokens of $2 segments claimed but never sent.
SELECT fairlane.return_tokens_v1($1, $2)

-- name: take_lease
-- Claim for destination $1 as its claimer number $2 (a session advisory lock on the lease connection).
SELECT pg_try_advisory_lock(hashtext('fairlane.claimer'), ($1 * 8 + $2)::integer)

-- name: give_back_lease
-- Stop claiming for destination $1 as its claimer number $2.
SELECT pg_advisory_unlock(hashtext('fairlane.claimer'), ($1 * 8 + $2)::integer)

-- name: dispatchers
-- How many dispatcher processes run against this database (each holds one lease connection).
SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1
