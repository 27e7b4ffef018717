-- A quota window's counts after `added` segments were claimed at `at_time` (docs/decisions/0020; window_state_v1
-- reads them): a calendar window keeps one count, for the period that began at counted_at (a new period starts
-- from zero); a sliding one keeps the 61 latest intervals of a sixtieth of its period, newest first.
CREATE OR REPLACE FUNCTION fairlane.window_counts_v1(
    period text, reset_timezone text, sliding boolean, counts bigint[], counted_at timestamptz, at_time timestamptz,
    added bigint
)
RETURNS TABLE (new_counts bigint[], new_counted_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT CASE
               WHEN NOT sliding AND counted_at >= s.period_start
                   THEN ARRAY[coalesce(counts[1], 0) + added]
               WHEN NOT sliding THEN ARRAY[added]
               WHEN s.shift = 0 THEN (ARRAY[coalesce(counts[1], 0) + added]
                                      || counts[2:61])
               WHEN s.shift > 60 THEN ARRAY[added]
               ELSE (ARRAY[added] || array_fill(0::bigint, ARRAY[s.shift - 1])
                     || counts[1:61 - s.shift])
           END,
           CASE
               WHEN NOT sliding THEN greatest(counted_at, s.period_start)
               WHEN s.shift = 0 THEN counted_at
               ELSE to_timestamp(s.current * s.width)
           END
    FROM (
        SELECT w.width, w.current, w.period_start,
               -- intervals since the newest counted one (none counted: more than the window holds)
               CASE WHEN counted_at IS NULL THEN 61
                    ELSE greatest(w.current - floor(extract(epoch FROM counted_at) / w.width + 1e-9), 0)::integer
               END AS shift
        FROM (
            SELECT x.width, floor(extract(epoch FROM at_time) / x.width) AS current,
                   date_trunc(period, at_time, reset_timezone) AS period_start
            FROM (SELECT CASE period WHEN 'minute' THEN 1 WHEN 'hour' THEN 60 ELSE 1440 END AS width) x
        ) w
    ) s
$$;
