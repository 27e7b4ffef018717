-- The destination's gateway throttled (HTTP 429): halve its effective rate, at most once a second and
-- not below 5% of the quota, in every slice. The claim adds back 10% of the quota per second once a second
-- has passed without a throttle (AIMD, shared by every dispatcher through the slices).
CREATE OR REPLACE FUNCTION fairlane.throttle_v2(destination bigint, at_time timestamptz DEFAULT NULL) RETURNS double precision
LANGUAGE plpgsql AS $$
DECLARE
    now_ timestamptz := coalesce(at_time, clock_timestamp());
    factor double precision;
BEGIN
    PERFORM FROM fairlane.destination_slices s WHERE s.destination_id = destination ORDER BY s.slice FOR NO KEY UPDATE;
    WITH throttled AS (
        UPDATE fairlane.destination_slices s
        SET rate_factor = CASE
                WHEN s.throttled_at IS NULL OR now_ - s.throttled_at >= interval '1 second'
                    THEN greatest(0.05, s.rate_factor * 0.5)
                ELSE s.rate_factor
            END,
            tokens = least(s.tokens, 0),
            refilled_at = now_,
            throttled_at = now_
        WHERE s.destination_id = destination
        RETURNING s.rate_factor
    )
    SELECT max(t.rate_factor) INTO factor FROM throttled t;
    RETURN factor;
END
$$;
