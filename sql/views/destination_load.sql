-- View for operators in psql (SPEC §5).
-- Per destination: quota, effective rate (after throttle back-off), current rate (segments per second
-- dispatched, averaged over about 10 s) and utilisation, backlog, active tenants and queues. The rates come
-- from the destination's bucket slices (docs/decisions/0011). `windows`: its quota windows' use and reset
-- (docs/decisions/0020), as fairlane.window_load shows them; NULL when it has none.
CREATE OR REPLACE VIEW fairlane.destination_load AS
SELECT d.code AS destination,
       g.name AS gateway,
       d.rate AS quota_rate,
       d.burst,
       round(sl.current_rate::numeric, 3) AS current_rate,
       round((sl.current_rate / d.rate)::numeric, 4) AS utilisation,
       coalesce(sum(q.queued_count), 0) AS backlog_messages,
       coalesce(sum(q.queued_segments), 0) AS backlog_segments,
       count(DISTINCT q.tenant_id) FILTER (WHERE q.queued_count > 0) AS active_tenants,
       count(q.id) FILTER (WHERE q.queued_count > 0) AS active_queues,
       round((d.rate * coalesce(sl.rate_factor, 1))::numeric, 3) AS effective_rate,
       wl.windows
FROM fairlane.destinations d
JOIN fairlane.gateways g ON g.id = d.gateway_id
LEFT JOIN LATERAL (
    -- slices a claim has not used since a throttle keep their lower factor: the highest is the one in use
    SELECT sum(fairlane.decayed_rate_v1(s.recent_rate, s.rate_at, now())) AS current_rate,
           max(s.rate_factor) AS rate_factor
    FROM fairlane.destination_slices s WHERE s.destination_id = d.id
) sl ON true
LEFT JOIN LATERAL (
    -- its quota windows' use (fairlane.window_load): quota, used, remaining, when each frees
    SELECT jsonb_agg(jsonb_build_object(
               'window', l.window_name, 'kind', l.kind, 'reset_timezone', l.reset_timezone, 'quota', l.quota,
               'used', l.used, 'remaining', l.remaining, 'resets_at', l.resets_at, 'closed', l.closed)
           ORDER BY l.window_id) AS windows
    FROM fairlane.window_load l
    WHERE l.scope = 'destination' AND l.destination = d.code
) wl ON true
LEFT JOIN fairlane.queues q ON q.destination_id = d.id
GROUP BY d.id, d.code, g.name, d.rate, d.burst, sl.current_rate, sl.rate_factor, wl.windows;
