-- Messages whose lease expired (their dispatcher died) go back to their queues, one attempt used; a
-- message that has used max_attempts fails with retries_exhausted.
CREATE OR REPLACE FUNCTION fairlane.rescue_v1(max_attempts integer, at_time timestamptz DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    now_ timestamptz := coalesce(at_time, clock_timestamp());
    ids bigint[];
    failed_count integer;
BEGIN
    WITH expired_leases AS (
        SELECT m.id FROM fairlane.messages m
        WHERE m.status = 'sending' AND m.lease_until < now_
        ORDER BY m.lease_until
        LIMIT 10000
        FOR UPDATE SKIP LOCKED
    ),
    counted AS (
        UPDATE fairlane.messages m
        SET attempts = m.attempts + 1,
            status = CASE WHEN m.attempts + 1 >= max_attempts THEN 'failed' ELSE m.status END,
            error_code = CASE WHEN m.attempts + 1 >= max_attempts THEN 'retries_exhausted' ELSE m.error_code END,
            claim_id = CASE WHEN m.attempts + 1 >= max_attempts THEN NULL ELSE m.claim_id END,
            lease_until = CASE WHEN m.attempts + 1 >= max_attempts THEN NULL ELSE m.lease_until END
        FROM expired_leases e WHERE m.id = e.id
        RETURNING m.id, m.tenant_id, m.status
    ),
    failed_events AS (
        INSERT INTO fairlane.message_events (message_id, tenant_id, status, at, detail)
        SELECT c.id, c.tenant_id, 'failed', now_, '{"error_code": "retries_exhausted"}'::jsonb
        FROM counted c WHERE c.status = 'failed'
    )
    SELECT array_agg(c.id) FILTER (WHERE c.status = 'sending'), count(*) FILTER (WHERE c.status = 'failed')
    INTO ids, failed_count
    FROM counted c;
    IF ids IS NOT NULL THEN
        PERFORM fairlane.requeue_v1(ids, array_fill(NULL::timestamptz, ARRAY[array_length(ids, 1)]),
                                    array_fill('lease_expired'::text, ARRAY[array_length(ids, 1)]), now_);
    END IF;
    RETURN coalesce(array_length(ids, 1), 0) + failed_count;
END
$$;
