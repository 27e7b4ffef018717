-- The parts an SMPP gateway sent (docs/decisions/0016): each submit_sm the carrier accepted, with the id it
-- gave, written before the message's completion is recorded. A part whose receipt came first (on another
-- bind, or before this) is matched now, and a message whose every part has a receipt is settled. An id the
-- carrier gave before to another part (carriers reuse ids) starts afresh: that part's receipts are still to
-- come (the earlier part's message no longer finds it). Rows with an empty provider id are skipped (no receipt
-- could name them); an id given twice keeps its last part. Returns how many messages were settled.
CREATE OR REPLACE FUNCTION fairlane.record_parts_v1(
    gateway_id bigint, message_ids bigint[], part_numbers integer[], part_counts integer[], provider_ids text[]
) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    with_receipts bigint[];
    one bigint;
    settled integer := 0;
BEGIN
    PERFORM fairlane.lock_message_parts_v1(message_ids);
    -- an id the carrier gave before to another part: that row goes, its receipts were the other part's
    DELETE FROM fairlane.message_parts p
    USING unnest(provider_ids, message_ids, part_numbers) AS u(provider_id, message_id, part)
    WHERE p.gateway_id = record_parts_v1.gateway_id AND p.provider_id = u.provider_id
      AND p.message_id IS NOT NULL AND (p.message_id, p.part) <> (u.message_id, u.part);
    WITH written AS (
        INSERT INTO fairlane.message_parts AS p (gateway_id, provider_id, message_id, part, parts)
        SELECT DISTINCT ON (u.provider_id) record_parts_v1.gateway_id, u.provider_id, u.message_id, u.part, u.parts
        FROM unnest(provider_ids, message_ids, part_numbers, part_counts) WITH ORDINALITY
             AS u(provider_id, message_id, part, parts, ordinal)
        WHERE u.provider_id <> ''
        ORDER BY u.provider_id, u.ordinal DESC
        ON CONFLICT ON CONSTRAINT message_parts_pkey DO UPDATE  -- its receipt came first, or written again
        SET message_id = excluded.message_id, part = excluded.part, parts = excluded.parts
        RETURNING p.message_id, p.status
    )
    SELECT array_agg(DISTINCT w.message_id) INTO with_receipts FROM written w WHERE w.status IS NOT NULL;
    FOREACH one IN ARRAY coalesce(with_receipts, '{}') LOOP
        IF fairlane.settle_parts_v1(record_parts_v1.gateway_id, one) = 'settled' THEN
            settled := settled + 1;
        END IF;
    END LOOP;
    RETURN settled;
END
$$;
