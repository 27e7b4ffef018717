-- Scheduled messages whose send_at has come join their queues (or expire).
CREATE OR REPLACE FUNCTION fairlane.promote_v1(at_time timestamptz DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    now_ timestamptz := coalesce(at_time, clock_timestamp());
    ids bigint[];
BEGIN
    SELECT array_agg(d.id) INTO ids FROM (
        SELECT m.id FROM fairlane.messages_live m
        WHERE m.status = 'scheduled' AND m.send_at <= now_
        ORDER BY m.send_at
        LIMIT 10000
        FOR UPDATE SKIP LOCKED
    ) d;
    IF ids IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM fairlane.requeue_v1(ids, array_fill(NULL::timestamptz, ARRAY[array_length(ids, 1)]),
                                array_fill('send_at'::text, ARRAY[array_length(ids, 1)]), now_);
    RETURN array_length(ids, 1);
END
$$;
