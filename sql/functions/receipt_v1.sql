-- A delivery receipt from a gateway: a sent message becomes delivered or undelivered. Found by the
-- provider's id or by our message id, among the messages of that gateway; repeated receipts change nothing;
-- a receipt that overtakes the gateway's answer (the message is still live) is refused as retryable. The
-- message's usage moves from sent to its new status (on the day it was sent). Returns the message's status.
CREATE OR REPLACE FUNCTION fairlane.receipt_v1(gateway text, provider_id text, message_id bigint, status text,
                                               error_code text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    target record;
    now_ timestamptz := clock_timestamp();
BEGIN
    IF status IS NULL OR status NOT IN ('delivered', 'undelivered') THEN
        PERFORM fairlane.raise_v1('invalid_request', 'status', status,
                                  format('status %s is not delivered or undelivered', quote_literal(status)));
    END IF;
    IF provider_id IS NULL AND message_id IS NULL THEN
        PERFORM fairlane.raise_v1('invalid_request', 'provider_id', NULL, 'provider_id or id is required');
    END IF;
    -- two plain lookups, each one index probe per history partition: one query for both (an IN over a UNION of
    -- them) got a generic plan that walked every finished message of the gateway's queues (1 s per receipt with
    -- 16,000 messages kept; migration 0012)
    IF message_id IS NOT NULL THEN
        SELECT m.id, m.tenant_id, m.status, m.finished_at, m.event_count, m.status_callback, m.recipient,
               m.queue_id, m.segments, q.destination_id, q.sender_id
        INTO target
        FROM fairlane.messages_finished m
        JOIN fairlane.queues q ON q.id = m.queue_id
        JOIN fairlane.destinations d ON d.id = q.destination_id
        JOIN fairlane.gateways g ON g.id = d.gateway_id
        WHERE m.id = receipt_v1.message_id AND g.name = receipt_v1.gateway
        LIMIT 1
        FOR UPDATE OF m;
    ELSE
        SELECT m.id, m.tenant_id, m.status, m.finished_at, m.event_count, m.status_callback, m.recipient,
               m.queue_id, m.segments, q.destination_id, q.sender_id
        INTO target
        FROM fairlane.messages_finished m
        JOIN fairlane.queues q ON q.id = m.queue_id
        JOIN fairlane.destinations d ON d.id = q.destination_id
        JOIN fairlane.gateways g ON g.id = d.gateway_id
        WHERE m.provider_id = receipt_v1.provider_id AND g.name = receipt_v1.gateway
        LIMIT 1
        FOR UPDATE OF m;
    END IF;
    IF NOT FOUND THEN
        IF EXISTS (SELECT FROM fairlane.messages_live m WHERE m.id = receipt_v1.message_id) THEN
            -- the receipt overtook the gateway's answer: the gateway should send it again shortly
            PERFORM fairlane.raise_v1('receipt_too_early', 'id', message_id::text,
                                      'the message is not recorded as sent yet; retry the receipt');
        END IF;
        PERFORM fairlane.raise_v1('not_found', CASE WHEN message_id IS NULL THEN 'provider_id' ELSE 'id' END,
                                  coalesce(provider_id, message_id::text), 'no message of this gateway has that id');
    END IF;
    IF target.status <> 'sent' THEN
        RETURN target.status;
    END IF;
    UPDATE fairlane.messages_finished m
    SET status = receipt_v1.status, error_code = receipt_v1.error_code, updated_at = now_,
        event_count = m.event_count + 1
    WHERE m.id = target.id AND m.finished_at = target.finished_at;
    PERFORM fairlane.record_events_v1(ARRAY[ROW(
        target.id, target.tenant_id, receipt_v1.status, now_,
        jsonb_strip_nulls(jsonb_build_object('error_code', receipt_v1.error_code)), target.finished_at,
        target.event_count + 1, target.status_callback, target.recipient, target.queue_id, target.segments
    )::fairlane.new_event_v1]);
    INSERT INTO fairlane.usage_counters AS c (tenant_id, destination_id, sender_id, day, status, slot, messages,
                                              segments)
    SELECT target.tenant_id, target.destination_id, target.sender_id, (target.finished_at AT TIME ZONE 'UTC')::date,
           u.status, pg_backend_pid() % 8, u.sign, u.sign * target.segments
    FROM (VALUES ('sent', -1), (receipt_v1.status, 1)) AS u(status, sign)
    ON CONFLICT ON CONSTRAINT usage_counters_pkey
    DO UPDATE SET messages = c.messages + excluded.messages, segments = c.segments + excluded.segments;
    RETURN receipt_v1.status;
END
$$;
