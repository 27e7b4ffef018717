-- A quota window's use at `at_time` (docs/decisions/0020), from its row in quota_windows: the segments counted in
-- the window, what is left of its quota (none while it is closed), and when it frees: a calendar window at the
-- start of its next period in reset_timezone (local midnight for a day), a sliding one when the oldest interval
-- still counted leaves it (NULL when nothing is counted), a closed one at closed_until.
-- A sliding window counts 61 intervals of a sixtieth of its period (window_counts_v1): every interval that
-- overlaps the last period, so it never counts less than was claimed in it (and holds back at most a sixtieth).
CREATE OR REPLACE FUNCTION fairlane.window_state_v1(
    period text, quota integer, reset_timezone text, sliding boolean, counts bigint[], counted_at timestamptz,
    closed_until timestamptz, at_time timestamptz
)
RETURNS TABLE (used bigint, remaining bigint, resets_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT u.used,
           CASE WHEN closed_until > at_time THEN 0 ELSE greatest(quota - u.used, 0) END,
           CASE WHEN closed_until > at_time THEN closed_until ELSE u.frees_at END
    FROM (
        SELECT CASE
                   WHEN sliding THEN
                       (SELECT coalesce(sum(c.n), 0)::bigint FROM unnest(counts[1:s.kept]) c(n))
                   WHEN counted_at >= date_trunc(period, at_time, reset_timezone) THEN coalesce(counts[1], 0)
                   ELSE 0
               END AS used,
               CASE
                   WHEN sliding THEN
                       (SELECT to_timestamp((s.newest - max(c.k) + 62) * s.width)
                        FROM unnest(counts[1:s.kept]) WITH ORDINALITY c(n, k) WHERE c.n > 0)
                   ELSE (date_trunc(period, at_time, reset_timezone) AT TIME ZONE reset_timezone
                         + ('1 ' || period)::interval) AT TIME ZONE reset_timezone
               END AS frees_at
        FROM (
            -- a sliding window's intervals: their width in seconds, the newest counted one's number, and how
            -- many of the counted ones still overlap the period up to at_time
            SELECT w.width, w.newest,
                   61 - greatest(floor(extract(epoch FROM at_time) / w.width) - w.newest, 0)::integer AS kept
            FROM (
                SELECT x.width, floor(extract(epoch FROM counted_at) / x.width + 1e-9) AS newest
                FROM (SELECT CASE period WHEN 'minute' THEN 1 WHEN 'hour' THEN 60 ELSE 1440 END AS width) x
            ) w
        ) s
    ) u
$$;
