-- A delivery receipt for one part of a message sent over SMPP (a deliver_sm), matched by the carrier's id
-- within the gateway. Kept first, whether or not the part is known yet (a receipt may overtake the part's row:
-- record_parts_v1 matches it later); then the message is settled once every part has a receipt
-- (settle_parts_v1). Returns 'duplicate' (this part had a receipt already: nothing changes), 'unknown' (no
-- part has that id, yet), 'partial', 'waiting' or 'settled'.
CREATE OR REPLACE FUNCTION fairlane.part_receipt_v1(gateway_id bigint, provider_id text, status text,
                                                    error_code text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    known bigint;
    kept record;
BEGIN
    IF status IS NULL OR status NOT IN ('delivered', 'undelivered') THEN
        PERFORM fairlane.raise_v1('invalid_request', 'status', status,
                                  format('status %s is not delivered or undelivered', quote_literal(status)));
    END IF;
    IF provider_id IS NULL OR provider_id = '' THEN
        PERFORM fairlane.raise_v1('invalid_request', 'provider_id', provider_id, 'a receipt names the part''s id');
    END IF;
    SELECT p.message_id INTO known FROM fairlane.message_parts p
    WHERE p.gateway_id = part_receipt_v1.gateway_id AND p.provider_id = part_receipt_v1.provider_id;
    PERFORM fairlane.lock_message_parts_v1(ARRAY[known]);
    INSERT INTO fairlane.message_parts AS p (gateway_id, provider_id, status, error_code, receipts)
    VALUES (part_receipt_v1.gateway_id, part_receipt_v1.provider_id, part_receipt_v1.status,
            part_receipt_v1.error_code, 1)
    ON CONFLICT ON CONSTRAINT message_parts_pkey DO UPDATE
    SET receipts = p.receipts + 1,
        status = coalesce(p.status, excluded.status),
        error_code = CASE WHEN p.status IS NULL THEN excluded.error_code ELSE p.error_code END
    RETURNING p.message_id, p.receipts INTO kept;
    IF kept.receipts > 1 THEN
        RETURN 'duplicate';
    ELSIF kept.message_id IS NULL THEN
        RETURN 'unknown';
    END IF;
    IF known IS NULL THEN  -- the part's row came meanwhile
        PERFORM fairlane.lock_message_parts_v1(ARRAY[kept.message_id]);
    END IF;
    RETURN fairlane.settle_parts_v1(part_receipt_v1.gateway_id, kept.message_id);
END
$$;
