-- View for operators in psql (SPEC §5).
-- Per tenant and destination: messages by status and segments.
CREATE VIEW fairlane.tenant_usage AS
SELECT ts.name AS tenant_set,
       t.name AS tenant,
       d.code AS destination,
       count(*) AS messages,
       count(*) FILTER (WHERE m.status = 'scheduled') AS scheduled,
       count(*) FILTER (WHERE m.status = 'queued') AS queued,
       count(*) FILTER (WHERE m.status = 'sending') AS sending,
       count(*) FILTER (WHERE m.status = 'sent') AS sent,
       count(*) FILTER (WHERE m.status = 'delivered') AS delivered,
       count(*) FILTER (WHERE m.status = 'undelivered') AS undelivered,
       count(*) FILTER (WHERE m.status = 'failed') AS failed,
       count(*) FILTER (WHERE m.status = 'expired') AS expired,
       count(*) FILTER (WHERE m.status = 'canceled') AS canceled,
       sum(m.segments) AS segments
FROM fairlane.messages m
JOIN fairlane.queues q ON q.id = m.queue_id
JOIN fairlane.tenants t ON t.id = q.tenant_id
JOIN fairlane.tenant_sets ts ON ts.id = t.tenant_set_id
JOIN fairlane.destinations d ON d.id = q.destination_id
GROUP BY ts.name, t.name, d.code;
