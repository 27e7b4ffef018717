-- The maintenance leader's pruning of small tables, bounded per call (run every second): idempotency keys
-- older than a day (a replay is promised for 24 h) and status callbacks delivered or abandoned more than a
-- day ago — or than the retention of finished messages when it is shorter (a key or a callback of a message
-- that is gone is of no use) — at most 10,000 of each, oldest first, through their indexes. Returns how many
-- rows went.
CREATE OR REPLACE FUNCTION fairlane.prune_v1(at_time timestamptz DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    now_ timestamptz := coalesce(at_time, clock_timestamp());
    kept interval := (SELECT least(s.retention_seconds, 86400) * interval '1 second' FROM fairlane.settings s);
    keys integer;
    callbacks integer;
BEGIN
    DELETE FROM fairlane.idempotency_keys k
    WHERE (k.tenant_id, k.key) IN (
        SELECT o.tenant_id, o.key FROM fairlane.idempotency_keys o
        WHERE o.created_at < now_ - kept
        ORDER BY o.created_at
        LIMIT 10000
    );
    GET DIAGNOSTICS keys = ROW_COUNT;
    DELETE FROM fairlane.callbacks c
    WHERE c.event_id IN (
        SELECT o.event_id FROM fairlane.callbacks o
        WHERE (o.delivered_at IS NOT NULL OR o.abandoned_at IS NOT NULL)
          AND coalesce(o.delivered_at, o.abandoned_at) < now_ - kept
        ORDER BY coalesce(o.delivered_at, o.abandoned_at)
        LIMIT 10000
    );
    GET DIAGNOSTICS callbacks = ROW_COUNT;
    RETURN keys + callbacks;
END
$$;
