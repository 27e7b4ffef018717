-- The width of the partitions of finished messages and their events for a retention: the largest of 1 min,
-- 5 min, 15 min, 1 h, 6 h and 1 day that is at most a quarter of it (30 days: a day; 24 h: 6 h; 15 min:
-- 1 min), so retention drops a partition at most a quarter of the retention late, and the partitions number
-- about four to thirty.
CREATE OR REPLACE FUNCTION fairlane.history_partition_seconds_v1(retention_seconds integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(max(w), 60) FROM unnest(ARRAY[60, 300, 900, 3600, 21600, 86400]) w WHERE w <= retention_seconds / 4
$$;
