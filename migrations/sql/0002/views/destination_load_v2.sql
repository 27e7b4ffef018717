-- View for operators in psql (SPEC §5).
-- Per destination: quota, effective rate (after throttle back-off), current rate (segments per second
-- dispatched, averaged over about 10 s) and utilisation, backlog, active tenants and queues.
CREATE OR REPLACE VIEW fairlane.destination_load AS
SELECT d.code AS destination,
       g.name AS gateway,
       d.rate AS quota_rate,
       d.burst,
       round(fairlane.decayed_rate_v1(st.recent_rate, st.rate_at, now())::numeric, 3) AS current_rate,
       round((fairlane.decayed_rate_v1(st.recent_rate, st.rate_at, now()) / d.rate)::numeric, 4) AS utilisation,
       coalesce(sum(q.queued_count), 0) AS backlog_messages,
       coalesce(sum(q.queued_segments), 0) AS backlog_segments,
       count(DISTINCT q.tenant_id) FILTER (WHERE q.queued_count > 0) AS active_tenants,
       count(q.id) FILTER (WHERE q.queued_count > 0) AS active_queues,
       round((d.rate * coalesce(st.rate_factor, 1))::numeric, 3) AS effective_rate
FROM fairlane.destinations d
JOIN fairlane.gateways g ON g.id = d.gateway_id
LEFT JOIN fairlane.destination_state st ON st.destination_id = d.id
LEFT JOIN fairlane.queues q ON q.destination_id = d.id
GROUP BY d.id, d.code, g.name, d.rate, d.burst, st.recent_rate, st.rate_at, st.rate_factor;
