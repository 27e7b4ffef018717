-- Queries of the API's health endpoints (asyncpg).

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
