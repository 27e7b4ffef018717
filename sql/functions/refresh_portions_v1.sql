-- Store fresh portions on the destination's queues (NULL on inactive ones); a portion that moved by less
-- than 1% is left as it is, so small tenants coming and going do not rewrite every queue. Queues locked by
-- a concurrent statement are skipped; returns false when any was, so the caller retries later.
CREATE OR REPLACE FUNCTION fairlane.refresh_portions_v1(destination bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    wanted_count integer;
    locked_count integer;
BEGIN
    WITH fresh AS (
        SELECT * FROM fairlane.compute_portions_v1(destination)
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
    RETURN locked_count = wanted_count;
END
$$;
