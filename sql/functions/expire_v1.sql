-- The expiry sweeper (run by the maintenance leader every second): queued and scheduled messages whose
-- validity has passed become expired whether or not a claim reaches their queue (portion 0, a gateway kind
-- no dispatcher serves, a gateway that is down), with their event, callback and usage; their queues' and
-- tenants' counters (queued_count, scheduled_count) drop at once, so admission sees the room. At most 10,000
-- per call, oldest first; rows locked by others (a claim, a cancel) are left for the next call. Returns how
-- many expired.
CREATE OR REPLACE FUNCTION fairlane.expire_v1(at_time timestamptz DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    now_ timestamptz := coalesce(at_time, clock_timestamp());
    ids bigint[];
    expired_count integer;
BEGIN
    SELECT array_agg(d.id ORDER BY d.id) INTO ids FROM (
        SELECT m.id FROM fairlane.messages_live m
        WHERE m.status IN ('queued', 'scheduled') AND m.expires_at <= now_
        ORDER BY m.expires_at
        LIMIT 10000
        FOR UPDATE SKIP LOCKED
    ) d;
    IF ids IS NULL THEN
        RETURN 0;
    END IF;
    -- the tenants of the scheduled ones locked first, in id order, then the queues (accept_v2's order)
    PERFORM t.id
    FROM fairlane.tenants t
    WHERE t.id IN (SELECT m.tenant_id FROM fairlane.messages_live m WHERE m.id = ANY (ids) AND m.status = 'scheduled')
    ORDER BY t.id
    FOR NO KEY UPDATE;
    WITH expired AS (
        SELECT * FROM fairlane.finish_v1(
            ids, array_fill('expired'::text, ARRAY[cardinality(ids)]), array_fill(NULL::text, ARRAY[cardinality(ids)]),
            array_fill(NULL::text, ARRAY[cardinality(ids)]), array_fill(NULL::text, ARRAY[cardinality(ids)]),
            array_fill(0, ARRAY[cardinality(ids)]),
            array_fill('{"reason": "validity passed while waiting"}'::jsonb, ARRAY[cardinality(ids)]),
            ARRAY['queued', 'scheduled'], NULL, now_)
    ),
    scheduled AS (
        SELECT q.tenant_id, count(*) AS messages
        FROM expired e JOIN fairlane.queues q ON q.id = e.queue_id
        WHERE e.previous_status = 'scheduled'
        GROUP BY q.tenant_id
    ),
    uncounted AS (
        UPDATE fairlane.tenants t
        SET scheduled_count = t.scheduled_count - s.messages
        FROM scheduled s
        WHERE t.id = s.tenant_id
    ),
    counts AS (
        SELECT e.queue_id, count(*) AS messages, sum(e.segments) AS segments
        FROM expired e WHERE e.previous_status = 'queued' GROUP BY e.queue_id
    ),
    locked AS (
        SELECT q.id FROM fairlane.queues q WHERE q.id IN (SELECT c.queue_id FROM counts c)
        ORDER BY q.id FOR NO KEY UPDATE
    ),
    counted AS (
        UPDATE fairlane.queues q
        SET queued_count = q.queued_count - c.messages, queued_segments = q.queued_segments - c.segments
        FROM counts c JOIN locked l ON l.id = c.queue_id
        WHERE q.id = c.queue_id
    )
    SELECT count(*) INTO expired_count FROM expired;
    RETURN expired_count;
END
$$;
