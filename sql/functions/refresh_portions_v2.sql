-- Store fresh portions on the destination's queues (NULL on inactive ones); a portion that moved by less
-- than 1% is left as it is, so small tenants coming and going do not rewrite every queue. Queues whose sender
-- has a quota window spent at `at_time` count as inactive (docs/decisions/0020): `valid_until` says when the
-- first of those windows frees, when the portions must be computed again (NULL: none). Queues locked by a
-- concurrent statement are skipped; `complete` is false when any was, so the caller retries later.
CREATE OR REPLACE FUNCTION fairlane.refresh_portions_v2(
    destination bigint, at_time timestamptz, OUT complete boolean, OUT valid_until timestamptz
)
LANGUAGE plpgsql AS $$
DECLARE
    leaving bigint[];
    wanted_count integer;
    locked_count integer;
BEGIN
    SELECT coalesce(array_agg(b.queue_id), '{}'), min(b.frees_at) INTO leaving, valid_until
    FROM (
        SELECT q.id AS queue_id, max(ws.resets_at) AS frees_at
        FROM fairlane.queues q
        JOIN fairlane.quota_windows w ON w.sender_id = q.sender_id
        CROSS JOIN LATERAL fairlane.window_state_v1(w.period, w.quota, w.reset_timezone, w.sliding, w.counts,
                                                    w.counted_at, w.closed_until, at_time) ws
        WHERE q.destination_id = destination AND q.queued_count > 0 AND ws.remaining < 1
        GROUP BY q.id
    ) b;
    WITH fresh AS (
        SELECT * FROM fairlane.compute_portions_v2(destination, leaving)
    ),
    wanted AS (
        SELECT q.id, f.portion
        FROM fairlane.queues q
        LEFT JOIN fresh f ON f.queue_id = q.id
        WHERE q.destination_id = destination AND (q.queued_count > 0 OR q.portion IS NOT NULL)
          AND ((q.portion IS NULL) <> (f.portion IS NULL) OR abs(q.portion - f.portion) > 0.01 * q.portion)
    ),
    lockable AS (
        SELECT q.id FROM fairlane.queues q
        WHERE q.id IN (SELECT w.id FROM wanted w)
        ORDER BY q.id
        FOR NO KEY UPDATE SKIP LOCKED
    ),
    updated AS (
        UPDATE fairlane.queues q SET portion = w.portion
        FROM lockable l JOIN wanted w ON w.id = l.id
        WHERE q.id = l.id
        RETURNING q.id
    )
    SELECT (SELECT count(*) FROM wanted), (SELECT count(*) FROM updated) INTO wanted_count, locked_count;
    complete := locked_count = wanted_count;
END
$$;
