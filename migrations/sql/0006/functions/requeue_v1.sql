-- Put live messages back in their queues: after a retryable error, a throttle, a release at shutdown, an
-- expired lease or when a scheduled time arrives (`reasons`, in each event's detail). A message whose
-- validity has passed expires instead (finish_v1). Queue counters are updated with the queues locked in id
-- order.
CREATE OR REPLACE FUNCTION fairlane.requeue_v1(message_ids bigint[], ready_at timestamptz[], reasons text[],
                                               at_time timestamptz)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    expired_ids bigint[];
    queued fairlane.new_event_v1[];
BEGIN
    SELECT array_agg(m.id ORDER BY m.id) INTO expired_ids
    FROM fairlane.messages_live m
    WHERE m.id = ANY (message_ids) AND m.expires_at <= at_time;
    IF expired_ids IS NOT NULL THEN
        PERFORM FROM fairlane.finish_v1(
            expired_ids, array_fill('expired'::text, ARRAY[cardinality(expired_ids)]),
            array_fill(NULL::text, ARRAY[cardinality(expired_ids)]),
            array_fill(NULL::text, ARRAY[cardinality(expired_ids)]),
            array_fill(NULL::text, ARRAY[cardinality(expired_ids)]),
            array_fill(0, ARRAY[cardinality(expired_ids)]),
            ARRAY(SELECT jsonb_build_object('reason', u.reason)
                  FROM unnest(message_ids, reasons) AS u(id, reason)
                  WHERE u.id = ANY (expired_ids) ORDER BY u.id),
            ARRAY['scheduled', 'queued', 'sending'], NULL, at_time);
    END IF;
    WITH moved AS (
        UPDATE fairlane.messages_live m
        SET status = 'queued', available_at = u.ready_at, claim_id = NULL, lease_until = NULL, updated_at = at_time,
            event_count = m.event_count + 1
        FROM unnest(message_ids, ready_at, reasons) AS u(id, ready_at, reason)
        WHERE m.id = u.id AND m.expires_at > at_time
        RETURNING m.id, m.tenant_id, m.queue_id, m.segments, m.event_count, m.status_callback, m.recipient, u.reason
    )
    SELECT array_agg(ROW(mv.id, mv.tenant_id, 'queued', at_time, jsonb_build_object('reason', mv.reason), NULL,
                         mv.event_count, mv.status_callback, mv.recipient, mv.queue_id, mv.segments
                     )::fairlane.new_event_v1)
    INTO queued
    FROM moved mv;
    IF queued IS NULL THEN
        RETURN;
    END IF;
    PERFORM fairlane.record_events_v1(queued);
    WITH counts AS (
        SELECT q.queue_id, count(*) AS messages, sum(q.segments) AS segments
        FROM unnest(queued) q GROUP BY q.queue_id
    ),
    locked AS (
        SELECT q.id FROM fairlane.queues q WHERE q.id IN (SELECT c.queue_id FROM counts c)
        ORDER BY q.id FOR NO KEY UPDATE
    )
    UPDATE fairlane.queues q
    SET queued_count = q.queued_count + c.messages, queued_segments = q.queued_segments + c.segments
    FROM counts c JOIN locked l ON l.id = c.queue_id
    WHERE q.id = c.queue_id;
END
$$;
