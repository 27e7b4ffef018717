-- Retention, one step per call (the maintenance leader calls it until it returns false): drop the oldest pair
-- of partitions of messages_finished and message_events_finished whose upper bound is past the retention — a
-- finished message and its events are gone once the whole partition they finished in is older than the
-- retention. Dropping locks the parents (ACCESS EXCLUSIVE) for a moment; with a lock timeout of 100 ms it
-- waits for no long transaction: it returns false and is called again next tick. Claims never wait (they
-- touch only messages_live). Returns whether it dropped one.
CREATE OR REPLACE FUNCTION fairlane.drop_history_partition_v1(at_time timestamptz DEFAULT NULL) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    now_ timestamptz := coalesce(at_time, clock_timestamp());
    oldest timestamptz;
    suffix text;
BEGIN
    SELECT p.lower INTO oldest
    FROM fairlane.history_partitions p, fairlane.settings s
    WHERE p.upper <= now_ - s.retention_seconds * interval '1 second'
    ORDER BY p.lower
    LIMIT 1;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    suffix := to_char(oldest AT TIME ZONE 'UTC', 'YYYYMMDD"_"HH24MI');
    PERFORM set_config('lock_timeout', '100ms', true);
    EXECUTE format('DROP TABLE fairlane.%I, fairlane.%I',
                   'messages_finished_p' || suffix, 'message_events_finished_p' || suffix);
    DELETE FROM fairlane.history_partitions p WHERE p.lower = oldest;
    RETURN true;
EXCEPTION WHEN lock_not_available THEN
    RETURN false;
END
$$;
