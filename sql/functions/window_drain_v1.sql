-- How long a queue's backlog takes to drain (docs/decisions/0020), for admission control (accept_v3) and
-- fairlane.queue_state: `backlog` segments at its `portion` (segments per second), unless a quota window of its
-- destination or sender cannot take them before it frees: then until that window frees, plus a whole period for
-- each further quota's worth, plus the rest at the portion. Of the destination's windows the queue counts on its
-- share (portion / rate). `binding` names the window that makes the wait longest (NULL: the portion alone) and
-- `resets_at` when it frees. No row when the portion is not positive.
CREATE OR REPLACE FUNCTION fairlane.window_drain_v1(
    destination bigint, sender bigint, portion double precision, backlog double precision, at_time timestamptz
)
RETURNS TABLE (drain_seconds double precision, binding text, resets_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT x.drain, x.binding, x.resets_at
    FROM (
        SELECT backlog / portion AS drain, NULL::text AS binding, NULL::timestamptz AS resets_at
        WHERE portion > 0
        UNION ALL
        SELECT extract(epoch FROM f.frees_at - at_time)
                   + f.periods * CASE w.period WHEN 'minute' THEN 60 WHEN 'hour' THEN 3600 ELSE 86400 END
                   + (f.excess - f.periods * w.quota * f.share) / portion,
               CASE WHEN w.destination_id IS NOT NULL THEN 'destination' ELSE 'sender' END || ' per_' || w.period,
               f.frees_at
        FROM fairlane.quota_windows w
        CROSS JOIN LATERAL fairlane.window_state_v1(w.period, w.quota, w.reset_timezone, w.sliding, w.counts,
                                                    w.counted_at, w.closed_until, at_time) ws
        CROSS JOIN LATERAL (
            SELECT s.share, s.frees_at, backlog - ws.remaining * s.share AS excess,
                   -- the whole periods it waits beyond the first reset
                   greatest(ceil((backlog - ws.remaining * s.share) / (w.quota * s.share)) - 1, 0) AS periods
            FROM (
                SELECT CASE WHEN w.destination_id IS NULL THEN 1
                            ELSE portion / (SELECT dn.rate FROM fairlane.destinations dn WHERE dn.id = destination)
                       END AS share,
                       coalesce(ws.resets_at, at_time + ('1 ' || w.period)::interval) AS frees_at
            ) s
        ) f
        WHERE portion > 0 AND (w.destination_id = destination OR w.sender_id = sender)
          AND backlog > ws.remaining * f.share
    ) x
    ORDER BY x.drain DESC
    LIMIT 1
$$;
