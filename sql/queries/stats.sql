-- Queries of `fairlane stats` (psycopg).

-- name: destinations
-- Every destination's quota, load and backlog.
SELECT destination, gateway, quota_rate, burst, current_rate, utilisation, backlog_messages, backlog_segments,
       active_tenants, active_queues
FROM fairlane.destination_load
ORDER BY destination

-- name: queues
-- Every queue's depth, portion and admission state, fullest first.
SELECT destination, tenant_set, tenant, sender, depth, queued_segments, oldest_age_seconds, portion,
       projected_drain_seconds, admission
FROM fairlane.queue_state
ORDER BY destination, depth DESC, queue_id
