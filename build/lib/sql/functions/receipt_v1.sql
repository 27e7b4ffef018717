-- A delivery receipt from a gateway: a sent message becomes delivered or undelivered. Found by the
-- provider's id or by our message id; repeated receipts change nothing; a receipt that overtakes the
-- gateway's answer (the message is still sending) is refused as retryable. Returns the message's status.
CREATE OR REPLACE FUNCTION fairlane.receipt_v1(gateway text, provider_id text, message_id bigint, status text,
                                    error_code text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    target record;
BEGIN
    IF status IS NULL OR status NOT IN ('delivered', 'undelivered') THEN
        PERFORM fairlane.raise_v1('invalid_request', 'status', status,
                                  format('status %s is not delivered or undelivered', quote_literal(status)));
    END IF;
    IF provider_id IS NULL AND message_id IS NULL THEN
        PERFORM fairlane.raise_v1('invalid_request', 'provider_id', NULL, 'provider_id or id is required');
    END IF;
    SELECT m.id, m.tenant_id, m.status INTO target
    FROM fairlane.messages m
    JOIN fairlane.queues q ON q.id = m.queue_id
    JOIN fairlane.destinations d ON d.id = q.destination_id
    JOIN fairlane.gateways g ON g.id = d.gateway_id
    WHERE g.name = receipt_v1.gateway
      AND m.id IN (
          SELECT m2.id FROM fairlane.messages m2 WHERE m2.id = receipt_v1.message_id
          UNION ALL
          SELECT m3.id FROM fairlane.messages m3
          WHERE receipt_v1.message_id IS NULL AND m3.provider_id = receipt_v1.provider_id
      )
    LIMIT 1
    FOR UPDATE OF m;
    IF NOT FOUND THEN
        PERFORM fairlane.raise_v1('not_found', CASE WHEN message_id IS NULL THEN 'provider_id' ELSE 'id' END,
                                  coalesce(provider_id, message_id::text), 'no message of this gateway has that id');
    END IF;
    IF target.status IN ('queued', 'sending') THEN
        -- the receipt overtook the gateway's answer: the gateway should send it again shortly
        PERFORM fairlane.raise_v1('receipt_too_early', 'provider_id', coalesce(provider_id, message_id::text),
                                  'the message is not recorded as sent yet; retry the receipt');
    END IF;
    IF target.status = 'sent' THEN
        UPDATE fairlane.messages m
        SET status = receipt_v1.status, error_code = receipt_v1.error_code, updated_at = clock_timestamp()
        WHERE m.id = target.id;
        INSERT INTO fairlane.message_events (message_id, tenant_id, status, detail)
        VALUES (target.id, target.tenant_id, receipt_v1.status,
                jsonb_strip_nulls(jsonb_build_object('error_code', receipt_v1.error_code)));
        RETURN receipt_v1.status;
    END IF;
    RETURN target.status;
END
$$;
