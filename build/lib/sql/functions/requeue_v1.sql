-- Put messages back in their queues (or expire them when their validity has passed): after a retryable
-- error, a throttle, a release at shutdown, an expired lease or when a scheduled time arrives.
-- Queue counters are updated with the queues locked in id order.
CREATE OR REPLACE FUNCTION fairlane.requeue_v1(message_ids bigint[], ready_at timestamptz[], reasons text[],
                                    at_time timestamptz)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    WITH moved AS (
        UPDATE fairlane.messages m
        SET status = CASE WHEN m.expires_at <= at_time THEN 'expired' ELSE 'queued' END,
            available_at = u.ready_at, claim_id = NULL, lease_until = NULL, updated_at = at_time
        FROM unnest(message_ids, ready_at, reasons) AS u(id, ready_at, reason)
        WHERE m.id = u.id
        RETURNING m.id, m.tenant_id, m.queue_id, m.segments, m.status, u.reason
    ),
    events AS (
        INSERT INTO fairlane.message_events (message_id, tenant_id, status, at, detail)
        SELECT mv.id, mv.tenant_id, mv.status, at_time, jsonb_build_object('reason', mv.reason) FROM moved mv
    ),
    counts AS (
        SELECT mv.queue_id, count(*) AS messages, sum(mv.segments) AS segments
        FROM moved mv WHERE mv.status = 'queued' GROUP BY mv.queue_id
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
