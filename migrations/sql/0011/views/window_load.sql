-- View for operators in psql (docs/decisions/0020): every quota window of a destination or a sender, with its
-- use now: the quota, the segments counted in the window, what is left, when it frees (a calendar window at its
-- reset, a sliding one when its oldest counted interval leaves) and whether it is closed (it refused a message
-- and takes nothing until then).
CREATE OR REPLACE VIEW fairlane.window_load AS
SELECT w.id AS window_id,
       CASE WHEN w.destination_id IS NOT NULL THEN 'destination' ELSE 'sender' END AS scope,
       d.code AS destination,
       t.name AS tenant,
       s.address AS sender,
       'per_' || w.period AS window_name,
       CASE WHEN w.sliding THEN 'sliding' ELSE 'calendar' END AS kind,
       w.reset_timezone,
       w.quota,
       ws.used,
       ws.remaining,
       ws.resets_at,
       coalesce(w.closed_until > now(), false) AS closed
FROM fairlane.quota_windows w
CROSS JOIN LATERAL fairlane.window_state_v1(w.period, w.quota, w.reset_timezone, w.sliding, w.counts, w.counted_at,
                                            w.closed_until, now()) ws
LEFT JOIN fairlane.destinations d ON d.id = w.destination_id
LEFT JOIN fairlane.senders s ON s.id = w.sender_id
LEFT JOIN fairlane.tenants t ON t.id = s.tenant_id;
