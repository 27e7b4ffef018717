-- Partition upkeep, one step per call (the maintenance leader calls it until it returns false, a few times a
-- second at most): make the next partition of messages_finished and of message_events_finished, in a pair with
-- the same bounds (width: history_partition_seconds_v1 of the retention), while the newest ends less than two
-- widths (and two minutes) ahead of now, so that each finished message finds its partition. After a gap (the
-- leader was away) the next one starts at now, or at the oldest row the default partition took meanwhile.
-- When the retention changed, the empty partitions ahead made for the old width are dropped first.
--   The partition is made as a table of its own, filled with any rows the default partition holds for its
-- range (normally none), then attached, with the parents locked in SHARE mode for that moment (a finishing
-- message routed to the default partition just before would otherwise break its new constraint): completions
-- wait milliseconds, claims not at all (they touch only messages_live). With a lock timeout of 100 ms it waits
-- for no long transaction: it returns false and is called again next tick. Returns whether it made one.
CREATE OR REPLACE FUNCTION fairlane.make_history_partition_v1(at_time timestamptz DEFAULT NULL) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    now_ timestamptz := coalesce(at_time, clock_timestamp());
    width integer;
    newest timestamptz;
    lower_ timestamptz;
    upper_ timestamptz;
    suffix text;
    stale timestamptz;
    empty boolean;
BEGIN
    SELECT fairlane.history_partition_seconds_v1(s.retention_seconds) INTO width FROM fairlane.settings s;
    PERFORM set_config('lock_timeout', '100ms', true);
    -- the retention changed: partitions wholly ahead made for another width go (they are empty), to be made
    -- again; a shorter retention then takes effect when the partition of now ends
    SELECT p.lower INTO stale FROM fairlane.history_partitions p
    WHERE p.lower > now_ AND p.upper - p.lower <> width * interval '1 second'
    ORDER BY p.lower DESC LIMIT 1;
    IF FOUND THEN
        suffix := to_char(stale AT TIME ZONE 'UTC', 'YYYYMMDD"_"HH24MI');
        EXECUTE format('SELECT NOT EXISTS (SELECT FROM fairlane.%I) AND NOT EXISTS (SELECT FROM fairlane.%I)',
                       'messages_finished_p' || suffix, 'message_events_finished_p' || suffix) INTO empty;
        IF empty THEN
            EXECUTE format('DROP TABLE fairlane.%I, fairlane.%I',
                           'messages_finished_p' || suffix, 'message_events_finished_p' || suffix);
            DELETE FROM fairlane.history_partitions p WHERE p.lower = stale;
            RETURN true;
        END IF;
    END IF;
    SELECT max(p.upper) INTO newest FROM fairlane.history_partitions p;
    lower_ := greatest(newest, to_timestamp(floor(extract(epoch FROM least(now_, (
        SELECT min(m.finished_at) FROM fairlane.messages_finished_default m))) / width) * width));
    IF lower_ > now_ + greatest(2 * width, 120) * interval '1 second' THEN
        RETURN false;
    END IF;
    upper_ := lower_ + width * interval '1 second';
    suffix := to_char(lower_ AT TIME ZONE 'UTC', 'YYYYMMDD"_"HH24MI');
    EXECUTE format($ddl$
        LOCK TABLE fairlane.messages_finished, fairlane.message_events_finished IN SHARE MODE;
        CREATE TABLE fairlane.%1$I (LIKE fairlane.messages_finished INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
            WITH (fillfactor = 90);
        ALTER TABLE fairlane.%1$I ADD CONSTRAINT %3$I CHECK (finished_at >= %4$L AND finished_at < %5$L);
        WITH moved AS (
            DELETE FROM fairlane.messages_finished_default m
            WHERE m.finished_at >= %4$L AND m.finished_at < %5$L RETURNING m.*
        )
        INSERT INTO fairlane.%1$I SELECT * FROM moved;
        ALTER TABLE fairlane.messages_finished ATTACH PARTITION fairlane.%1$I FOR VALUES FROM (%4$L) TO (%5$L);
        ALTER TABLE fairlane.%1$I DROP CONSTRAINT %3$I;
        CREATE TABLE fairlane.%2$I (LIKE fairlane.message_events_finished INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
        ALTER TABLE fairlane.%2$I ADD CONSTRAINT %3$I CHECK (finished_at >= %4$L AND finished_at < %5$L);
        WITH moved AS (
            DELETE FROM fairlane.message_events_finished_default e
            WHERE e.finished_at >= %4$L AND e.finished_at < %5$L RETURNING e.*
        )
        INSERT INTO fairlane.%2$I SELECT * FROM moved;
        ALTER TABLE fairlane.message_events_finished ATTACH PARTITION fairlane.%2$I FOR VALUES FROM (%4$L) TO (%5$L);
        ALTER TABLE fairlane.%2$I DROP CONSTRAINT %3$I;
        $ddl$,
        'messages_finished_p' || suffix, 'message_events_finished_p' || suffix, 'range_' || suffix, lower_, upper_);
    INSERT INTO fairlane.history_partitions (lower, upper) VALUES (lower_, upper_);
    RETURN true;
EXCEPTION WHEN lock_not_available THEN
    RETURN false;
END
$$;
