-- Scheduled messages whose send_at has come join their queues (or expire), admission-checked like a new
-- submission (docs/decisions/0017): with the receiving queues locked in id order, a due message whose queue's
-- projected drain time (queued segments / the queue's portion) would pass the destination's max_drain_seconds
-- or the message's remaining validity fails with queue_overflow (its event, callback and usage through
-- finish_v1), as carriers fail messages that would wait too long. Oldest send_at first; a refused message
-- still counts against its queue, so a queue's later messages are refused too (acceptance resumes in order).
CREATE OR REPLACE FUNCTION fairlane.promote_v1(at_time timestamptz DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    now_ timestamptz := coalesce(at_time, clock_timestamp());
    ids bigint[];
    refused record;
BEGIN
    SELECT array_agg(d.id ORDER BY d.send_at, d.id) INTO ids FROM (
        SELECT m.id, m.send_at FROM fairlane.messages_live m
        WHERE m.status = 'scheduled' AND m.send_at <= now_
        ORDER BY m.send_at
        LIMIT 10000
        FOR UPDATE SKIP LOCKED
    ) d;
    IF ids IS NULL THEN
        RETURN 0;
    END IF;
    -- every one of them leaves 'scheduled' now (queued, failed or expired): its tenant's count drops, the
    -- tenants locked in id order before any queue (the order accept_v2 takes them in)
    PERFORM t.id
    FROM fairlane.tenants t
    WHERE t.id IN (SELECT m.tenant_id FROM fairlane.messages_live m WHERE m.id = ANY (ids))
    ORDER BY t.id
    FOR NO KEY UPDATE;
    UPDATE fairlane.tenants t
    SET scheduled_count = t.scheduled_count - c.messages
    FROM (SELECT m.tenant_id, count(*) AS messages FROM fairlane.messages_live m WHERE m.id = ANY (ids) GROUP BY 1) c
    WHERE t.id = c.tenant_id;
    PERFORM q.id
    FROM fairlane.queues q
    WHERE q.id IN (SELECT m.queue_id FROM fairlane.messages_live m WHERE m.id = ANY (ids))
    ORDER BY q.id
    FOR NO KEY UPDATE;
    WITH due AS (
        SELECT m.id, m.queue_id, m.segments, m.expires_at, u.position
        FROM unnest(ids) WITH ORDINALITY AS u(id, position)
        JOIN fairlane.messages_live m ON m.id = u.id
        WHERE m.expires_at > now_  -- the expired ones expire in requeue_v1
    ),
    joining AS (
        -- queues without a portion of their own yet (idle ones about to join): computed, as accept_v2 does
        SELECT q.id, q.destination_id FROM fairlane.queues q
        WHERE q.id IN (SELECT d.queue_id FROM due d) AND (q.queued_count = 0 OR q.portion IS NULL)
    ),
    computed AS (
        SELECT p.queue_id, p.portion
        FROM fairlane.queue_portions_v2(ARRAY(SELECT DISTINCT j.destination_id FROM joining j),
                                        ARRAY(SELECT j.id FROM joining j)) p
    ),
    checked AS (
        SELECT d.id, d.expires_at, q.queued_segments + sum(d.segments) OVER (
                   PARTITION BY d.queue_id ORDER BY d.position) AS backlog,
               coalesce(CASE WHEN q.queued_count > 0 THEN q.portion END, c.portion) AS portion,
               least(ds.max_drain_seconds::double precision, extract(epoch FROM d.expires_at - now_)) AS limit_seconds,
               t.name AS tenant, ds.code AS destination, s.address AS sender
        FROM due d
        JOIN fairlane.queues q ON q.id = d.queue_id
        JOIN fairlane.destinations ds ON ds.id = q.destination_id
        JOIN fairlane.tenants t ON t.id = q.tenant_id
        JOIN fairlane.senders s ON s.id = q.sender_id
        LEFT JOIN computed c ON c.queue_id = d.queue_id
    ),
    overflowing AS (
        SELECT c.id,
               format('queue %s / %s / %s was full when the message was due: %s queued segments would take %s s to '
                      'drain at its portion of %s segments/s, more than %s s', c.tenant, c.destination, c.sender,
                      c.backlog, coalesce(round((c.backlog / nullif(c.portion, 0))::numeric)::text, 'infinite'),
                      round(coalesce(c.portion, 0)::numeric, 3), round(c.limit_seconds::numeric)) AS message,
               jsonb_build_object('queued_segments', c.backlog, 'portion', c.portion,
                                  'max_drain_seconds', round(c.limit_seconds::numeric)) AS detail
        FROM checked c
        WHERE NOT (c.portion > 0) OR c.backlog / c.portion > c.limit_seconds
    )
    SELECT array_agg(o.id ORDER BY o.id) AS ids, array_agg(o.message ORDER BY o.id) AS messages,
           array_agg(o.detail ORDER BY o.id) AS details
    INTO refused
    FROM overflowing o;
    IF refused.ids IS NOT NULL THEN
        PERFORM FROM fairlane.finish_v1(
            refused.ids, array_fill('failed'::text, ARRAY[cardinality(refused.ids)]),
            array_fill('queue_overflow'::text, ARRAY[cardinality(refused.ids)]), refused.messages,
            array_fill(NULL::text, ARRAY[cardinality(refused.ids)]), array_fill(0, ARRAY[cardinality(refused.ids)]),
            ARRAY(SELECT jsonb_build_object('error_code', 'queue_overflow', 'error_message', u.message,
                                            'reason', 'queue full when due') || u.detail
                  FROM unnest(refused.messages, refused.details) WITH ORDINALITY AS u(message, detail, n)
                  ORDER BY u.n),
            ARRAY['scheduled'], NULL, now_);
        ids := ARRAY(SELECT u.id FROM unnest(ids) WITH ORDINALITY AS u(id, n)
                     WHERE u.id <> ALL (refused.ids) ORDER BY u.n);
    END IF;
    IF cardinality(ids) > 0 THEN
        PERFORM fairlane.requeue_v1(ids, array_fill(NULL::timestamptz, ARRAY[cardinality(ids)]),
                                    array_fill('send_at'::text, ARRAY[cardinality(ids)]), now_);
    END IF;
    RETURN cardinality(ids) + coalesce(cardinality(refused.ids), 0);
END
$$;
