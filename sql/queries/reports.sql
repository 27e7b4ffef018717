-- Reports: readiness and gauges for the API (asyncpg, $n parameters), `fairlane stats` and the dashboard
-- (psycopg, %(name)s parameters).

-- name: revision
-- The schema's Alembic revision.
SELECT version_num FROM alembic_version

-- name: queue_gauges
-- Per destination and tenant: queued messages, portion and recent rate (segments/s) of active queues.
SELECT destination, tenant, sum(depth)::float8 AS depth, sum(portion)::float8 AS portion,
       sum(recent_rate)::float8 AS recent_rate
FROM fairlane.queue_scores
GROUP BY destination, tenant

-- name: destination_gauges
-- Per destination: quota, effective rate, current rate, utilisation and backlog.
SELECT destination, quota_rate::float8, effective_rate::float8, current_rate::float8, utilisation::float8,
       backlog_segments::float8
FROM fairlane.destination_load

-- name: stats_destinations
-- Every destination's quota, load and backlog.
SELECT destination, gateway, quota_rate, burst, current_rate, utilisation, backlog_messages, backlog_segments,
       active_tenants, active_queues
FROM fairlane.destination_load
ORDER BY destination

-- name: stats_queues
-- Every queue's depth, portion and admission state, fullest first.
SELECT destination, tenant_set, tenant, sender, depth, queued_segments, oldest_age_seconds, portion,
       projected_drain_seconds, admission
FROM fairlane.queue_state
ORDER BY destination, depth DESC, queue_id

-- name: dashboard_destinations
-- The time of the reading and every destination's load (when there is no destination, one row with only the time).
SELECT clock.at, l.destination, l.gateway, l.quota_rate, l.burst, l.effective_rate, l.current_rate, l.utilisation,
       l.backlog_messages::bigint AS backlog_messages, l.backlog_segments::bigint AS backlog_segments,
       l.active_tenants, l.active_queues, l.windows
FROM (SELECT now() AS at) clock
LEFT JOIN fairlane.destination_load l ON true
ORDER BY l.destination

-- name: dashboard_queues
-- Every active queue's score, by destination and rank.
SELECT destination, tenant_set, tenant, sender, queue_id, depth, oldest_age_seconds, portion, recent_rate, score,
       eligible, rank, level, waiting_for, binding_limit, limit_remaining, limit_resets_at
FROM fairlane.queue_scores
ORDER BY destination, rank, queue_id

-- name: storage
-- Every table of schema fairlane (the partitions of finished messages and events counted in their parent):
-- table and index size, live and dead rows, when it was last vacuumed (by autovacuum or by hand).
WITH relations AS (
    SELECT c.oid,
           coalesce((SELECT p.relname FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
                     WHERE i.inhrelid = c.oid AND p.relname IN ('messages_finished', 'message_events_finished')),
                    c.relname) AS relation
    FROM pg_class c
    WHERE c.relnamespace = 'fairlane'::regnamespace AND c.relkind = 'r'
)
SELECT r.relation, count(*) AS tables,
       pg_size_pretty(sum(pg_table_size(r.oid))) AS table_size,
       pg_size_pretty(sum(pg_indexes_size(r.oid))) AS index_size,
       sum(s.n_live_tup) AS live_rows, sum(s.n_dead_tup) AS dead_rows,
       to_char(max(greatest(s.last_autovacuum, s.last_vacuum)) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS last_vacuum
FROM relations r
LEFT JOIN pg_stat_user_tables s ON s.relid = r.oid
GROUP BY r.relation
ORDER BY sum(pg_total_relation_size(r.oid)) DESC, r.relation
