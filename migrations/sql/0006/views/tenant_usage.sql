-- View for operators in psql (SPEC §5).
-- Per tenant and destination: messages by status and segments, for all time: the finished ones from
-- fairlane.usage_counters (they outlive retention), the live ones from messages_live.
CREATE OR REPLACE VIEW fairlane.tenant_usage AS
WITH counts AS (
    SELECT u.tenant_id, u.destination_id, u.status, sum(u.messages) AS messages, sum(u.segments) AS segments
    FROM fairlane.usage_counters u
    GROUP BY u.tenant_id, u.destination_id, u.status
    UNION ALL
    SELECT m.tenant_id, q.destination_id, m.status, count(*), sum(m.segments)
    FROM fairlane.messages_live m
    JOIN fairlane.queues q ON q.id = m.queue_id
    GROUP BY m.tenant_id, q.destination_id, m.status
)
SELECT ts.name AS tenant_set,
       t.name AS tenant,
       d.code AS destination,
       sum(c.messages)::bigint AS messages,
       coalesce(sum(c.messages) FILTER (WHERE c.status = 'scheduled'), 0)::bigint AS scheduled,
       coalesce(sum(c.messages) FILTER (WHERE c.status = 'queued'), 0)::bigint AS queued,
       coalesce(sum(c.messages) FILTER (WHERE c.status = 'sending'), 0)::bigint AS sending,
       coalesce(sum(c.messages) FILTER (WHERE c.status = 'sent'), 0)::bigint AS sent,
       coalesce(sum(c.messages) FILTER (WHERE c.status = 'delivered'), 0)::bigint AS delivered,
       coalesce(sum(c.messages) FILTER (WHERE c.status = 'undelivered'), 0)::bigint AS undelivered,
       coalesce(sum(c.messages) FILTER (WHERE c.status = 'failed'), 0)::bigint AS failed,
       coalesce(sum(c.messages) FILTER (WHERE c.status = 'expired'), 0)::bigint AS expired,
       coalesce(sum(c.messages) FILTER (WHERE c.status = 'canceled'), 0)::bigint AS canceled,
       sum(c.segments)::bigint AS segments
FROM counts c
JOIN fairlane.tenants t ON t.id = c.tenant_id
JOIN fairlane.tenant_sets ts ON ts.id = t.tenant_set_id
JOIN fairlane.destinations d ON d.id = c.destination_id
GROUP BY ts.name, t.name, d.code
HAVING sum(c.messages) <> 0;
