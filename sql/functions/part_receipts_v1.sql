-- Delivery receipts for parts of messages sent over SMPP, several at once (what one gateway process received
-- meanwhile, a few dozen: one transaction, one round trip), each as part_receipt_v1 does it. The parts locks
-- of every message they name are taken first, all at once in id order (lock_message_parts_v1, as the other
-- writers take them), then the receipts go in the order of those messages. Returns each receipt's result, in
-- the order given.
CREATE OR REPLACE FUNCTION fairlane.part_receipts_v1(gateway_id bigint, provider_ids text[], statuses text[],
                                                     error_codes text[]) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    results text[] := array_fill(NULL::text, ARRAY[coalesce(cardinality(provider_ids), 0)]);
BEGIN
    PERFORM fairlane.lock_message_parts_v1(array_agg(p.message_id))
    FROM fairlane.message_parts p
    WHERE p.gateway_id = part_receipts_v1.gateway_id AND p.provider_id = ANY (provider_ids);
    FOR r IN
        SELECT u.ordinal, u.provider_id, u.status, u.error_code
        FROM unnest(provider_ids, statuses, error_codes) WITH ORDINALITY AS u(provider_id, status, error_code, ordinal)
        LEFT JOIN fairlane.message_parts p
               ON p.gateway_id = part_receipts_v1.gateway_id AND p.provider_id = u.provider_id
        ORDER BY p.message_id NULLS LAST, u.ordinal
    LOOP
        results[r.ordinal] := fairlane.part_receipt_v1(part_receipts_v1.gateway_id, r.provider_id, r.status,
                                                       r.error_code);
    END LOOP;
    RETURN results;
END
$$;
