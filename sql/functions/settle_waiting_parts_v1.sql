-- The maintenance leader's second look (every second) at messages whose every part had its receipt while the
-- message was still live (settle_parts_v1): those finished since are settled now. At most `max_messages` per
-- call, in id order (lock_message_parts_v1). Returns how many were settled.
CREATE OR REPLACE FUNCTION fairlane.settle_waiting_parts_v1(max_messages integer DEFAULT 1000) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    w record;
    settled integer := 0;
BEGIN
    FOR w IN
        SELECT DISTINCT p.message_id, p.gateway_id FROM fairlane.message_parts p
        WHERE p.waiting ORDER BY p.message_id LIMIT max_messages
    LOOP
        PERFORM fairlane.lock_message_parts_v1(ARRAY[w.message_id]);
        IF fairlane.settle_parts_v1(w.gateway_id, w.message_id) = 'settled' THEN
            settled := settled + 1;
        END IF;
    END LOOP;
    RETURN settled;
END
$$;
