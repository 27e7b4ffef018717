-- View for operators in psql (SPEC §5).
-- Per destination: quota, current rate and utilisation (zero until dispatch records usage), backlog,
-- active tenants and queues.
CREATE VIEW fairlane.destination_load AS
SELECT d.code AS destination,
       g.name AS gateway,
       d.rate AS quota_rate,
       d.burst,
       0::numeric AS current_rate,
       0::numeric AS utilisation,
       coalesce(sum(q.queued_count), 0) AS backlog_messages,
       coalesce(sum(q.queued_segments), 0) AS backlog_segments,
       count(DISTINCT q.tenant_id) FILTER (WHERE q.queued_count > 0) AS active_tenants,
       count(q.id) FILTER (WHERE q.queued_count > 0) AS active_queues
FROM fairlane.destinations d
JOIN fairlane.gateways g ON g.id = d.gateway_id
LEFT JOIN fairlane.queues q ON q.destination_id = d.id
GROUP BY d.id, d.code, g.name, d.rate, d.burst;
