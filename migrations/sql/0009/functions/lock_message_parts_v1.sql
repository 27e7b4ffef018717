-- Serialises the writers of one message's parts (record_parts_v1, part_receipt_v1, settle_waiting_parts_v1)
-- until the end of the transaction, so that of two parts' receipts committing at once the later one sees the
-- earlier and settles the message (settle_parts_v1). Locks in ascending id order: writers locking several
-- messages never deadlock. One lock per message id (no hash: two ids never share a lock, which would invert
-- the order): its low 31 bits as the second key, its high bits folded into the first.
CREATE OR REPLACE FUNCTION fairlane.lock_message_parts_v1(message_ids bigint[]) RETURNS void
LANGUAGE sql AS $$
    SELECT count(pg_advisory_xact_lock(hashtext('fairlane.message_parts') # (m.id >> 31)::integer,
                                       (m.id & 2147483647)::integer))
    FROM (SELECT DISTINCT u.id FROM unnest(message_ids) AS u(id) WHERE u.id IS NOT NULL ORDER BY u.id) m
$$;
