-- View for operators in psql (SPEC §5).
-- Per queue: depth, oldest age, portion, projected drain time and admission state. The projected drain counts
-- the quota windows as admission does (window_drain_v1, docs/decisions/0020): a backlog a window cannot take
-- before it frees waits for it; `binding_limit` names that window and `limit_resets_at` says when it frees.
CREATE OR REPLACE VIEW fairlane.queue_state AS
SELECT q.id AS queue_id,
       ts.name AS tenant_set,
       t.name AS tenant,
       d.code AS destination,
       s.address AS sender,
       s.type AS sender_type,
       q.queued_count AS depth,
       q.queued_segments,
       round(extract(epoch FROM now() - head.created_at)::numeric, 3) AS oldest_age_seconds,
       round(p.portion::numeric, 3) AS portion,
       round(CASE WHEN q.queued_count = 0 THEN 0 ELSE wd.drain_seconds END::numeric, 1) AS projected_drain_seconds,
       d.max_drain_seconds,
       CASE WHEN q.queued_count > 0 AND (p.portion <= 0 OR wd.drain_seconds >= d.max_drain_seconds)
            THEN 'closed' ELSE 'open' END AS admission,
       wd.binding AS binding_limit,
       wd.resets_at AS limit_resets_at
FROM fairlane.queues q
JOIN fairlane.tenants t ON t.id = q.tenant_id
JOIN fairlane.tenant_sets ts ON ts.id = t.tenant_set_id
JOIN fairlane.destinations d ON d.id = q.destination_id
JOIN fairlane.senders s ON s.id = q.sender_id
LEFT JOIN LATERAL (
    -- the oldest queued message, whatever its level
    SELECT m.created_at
    FROM (VALUES (0), (1), (2)) AS lv(priority)
    CROSS JOIN LATERAL (
        SELECT m.id, m.created_at FROM fairlane.messages_live m
        WHERE m.queue_id = q.id AND m.status = 'queued' AND m.priority = lv.priority
        ORDER BY m.priority, m.id
        LIMIT 1
    ) m
    ORDER BY m.id
    LIMIT 1
) head ON true
LEFT JOIN fairlane.queue_portions_v2(ARRAY(SELECT dd.id FROM fairlane.destinations dd), '{}') p
    ON p.queue_id = q.id
LEFT JOIN LATERAL fairlane.window_drain_v1(q.destination_id, q.sender_id, p.portion, q.queued_segments, now()) wd
    ON true;
