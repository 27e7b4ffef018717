-- A message sent over SMPP gets its delivery receipt once every one of its parts has one (the caller holds its
-- parts lock, lock_message_parts_v1): delivered when every part was delivered, else undelivered with the first
-- undelivered part's error code, through receipt_v1 like any receipt. A part sent more than once (a crash
-- between the carrier's answer and the completion; a retry skips the parts already recorded) counts by its
-- latest send (the row recorded last; the same order as the gateway's sent_parts), so one send's receipts never
-- mix with another's. While the message is still live (the receipts overtook its completion) its parts wait,
-- and the maintenance leader comes back to them (settle_waiting_parts_v1). Returns 'settled' (applied, or
-- nothing left to apply: the message finished otherwise, or is gone), 'partial' (parts without a receipt) or
-- 'waiting'.
CREATE OR REPLACE FUNCTION fairlane.settle_parts_v1(gateway_id bigint, message_id bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    known record;
    receipt_status text;
BEGIN
    SELECT max(l.parts) AS parts,
           count(*) FILTER (WHERE l.status IS NOT NULL) AS answered,
           count(*) FILTER (WHERE l.status = 'delivered') AS delivered,
           (array_agg(l.error_code ORDER BY l.part) FILTER (WHERE l.status = 'undelivered'))[1] AS error_code,
           EXISTS (SELECT FROM fairlane.message_parts p
                   WHERE p.message_id = settle_parts_v1.message_id AND p.gateway_id = settle_parts_v1.gateway_id
                     AND p.waiting) AS waiting
    INTO known
    FROM (
        SELECT DISTINCT ON (p.part) p.part, p.parts, p.status, p.error_code
        FROM fairlane.message_parts p
        WHERE p.message_id = settle_parts_v1.message_id AND p.gateway_id = settle_parts_v1.gateway_id
        ORDER BY p.part, p.created_at DESC, p.provider_id DESC
    ) l;
    IF known.parts IS NULL OR known.answered < known.parts THEN
        RETURN 'partial';
    END IF;
    IF EXISTS (SELECT FROM fairlane.messages_live m WHERE m.id = settle_parts_v1.message_id) THEN
        IF NOT known.waiting THEN
            UPDATE fairlane.message_parts p SET waiting = true
            WHERE p.message_id = settle_parts_v1.message_id AND p.gateway_id = settle_parts_v1.gateway_id;
        END IF;
        RETURN 'waiting';
    END IF;
    receipt_status := CASE WHEN known.delivered >= known.parts THEN 'delivered' ELSE 'undelivered' END;
    BEGIN
        PERFORM fairlane.receipt_v1(g.name, NULL, settle_parts_v1.message_id, receipt_status,
                                    CASE WHEN receipt_status = 'undelivered' THEN known.error_code END)
        FROM fairlane.gateways g WHERE g.id = settle_parts_v1.gateway_id;
    EXCEPTION WHEN SQLSTATE 'FL404' THEN
        NULL;  -- the message is gone (past the retention): nothing to apply
    END;
    IF known.waiting THEN
        UPDATE fairlane.message_parts p SET waiting = false
        WHERE p.message_id = settle_parts_v1.message_id AND p.gateway_id = settle_parts_v1.gateway_id;
    END IF;
    RETURN 'settled';
END
$$;
