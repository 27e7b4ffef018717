-- Messages whose lease expired (their dispatcher died) go back to their queues, one attempt used; a
-- message that has used max_attempts fails with retries_exhausted.
CREATE OR REPLACE FUNCTION fairlane.rescue_v1(max_attempts integer, at_time timestamptz DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    now_ timestamptz := coalesce(at_time, clock_timestamp());
    exhausted bigint[];
    back bigint[];
BEGIN
    SELECT array_agg(l.id ORDER BY l.id) FILTER (WHERE l.attempts + 1 >= max_attempts),
           array_agg(l.id ORDER BY l.id) FILTER (WHERE l.attempts + 1 < max_attempts)
    INTO exhausted, back
    FROM (
        SELECT m.id, m.attempts FROM fairlane.messages_live m
        WHERE m.status = 'sending' AND m.lease_until < now_
        ORDER BY m.lease_until
        LIMIT 10000
        FOR UPDATE SKIP LOCKED
    ) l;
    IF exhausted IS NOT NULL THEN
        PERFORM FROM fairlane.finish_v1(
            exhausted, array_fill('failed'::text, ARRAY[cardinality(exhausted)]),
            array_fill('retries_exhausted'::text, ARRAY[cardinality(exhausted)]),
            array_fill(NULL::text, ARRAY[cardinality(exhausted)]),
            array_fill(NULL::text, ARRAY[cardinality(exhausted)]),
            array_fill(1, ARRAY[cardinality(exhausted)]),
            array_fill('{"error_code": "retries_exhausted"}'::jsonb, ARRAY[cardinality(exhausted)]),
            ARRAY['sending'], NULL, now_);
    END IF;
    IF back IS NOT NULL THEN
        UPDATE fairlane.messages_live m SET attempts = m.attempts + 1 WHERE m.id = ANY (back);
        PERFORM fairlane.requeue_v1(back, array_fill(NULL::timestamptz, ARRAY[cardinality(back)]),
                                    array_fill('lease_expired'::text, ARRAY[cardinality(back)]), now_);
    END IF;
    RETURN coalesce(cardinality(exhausted), 0) + coalesce(cardinality(back), 0);
END
$$;
