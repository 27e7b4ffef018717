-- The maintenance leader's pruning of fairlane.message_parts (run every second): parts sent, and receipts
-- for ids no part had, longer ago than the retention of finished messages (their messages are gone or going);
-- oldest first through the created_at index, 10,000 rows a statement, again while there are more and for at
-- most half a second, so it keeps up with parts written at 10,000s a second. Returns how many rows went.
CREATE OR REPLACE FUNCTION fairlane.prune_message_parts_v1(at_time timestamptz DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    now_ timestamptz := coalesce(at_time, clock_timestamp());
    kept interval := (SELECT s.retention_seconds * interval '1 second' FROM fairlane.settings s);
    until timestamptz := clock_timestamp() + interval '0.5 seconds';
    batch integer;
    pruned integer := 0;
BEGIN
    LOOP
        DELETE FROM fairlane.message_parts p
        WHERE (p.gateway_id, p.provider_id) IN (
            SELECT o.gateway_id, o.provider_id FROM fairlane.message_parts o
            WHERE o.created_at < now_ - kept
            ORDER BY o.created_at
            LIMIT 10000
        );
        GET DIAGNOSTICS batch = ROW_COUNT;
        pruned := pruned + batch;
        EXIT WHEN batch < 10000 OR clock_timestamp() >= until;
    END LOOP;
    RETURN pruned;
END
$$;
