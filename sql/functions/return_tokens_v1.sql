-- Tokens a claim took for messages that were never sent (released at shutdown, or too late for their slot
-- after a stall: docs/decisions/0018) go back to the destination's bucket, spread over its slices no claim
-- holds, each capped at its capacity: the quota they stand for serves the next claim instead of being lost.
-- A full bucket (the stall lasted long enough to refill it) takes nothing back, so a late release never lets
-- more through.
CREATE OR REPLACE FUNCTION fairlane.return_tokens_v1(destination bigint, segments integer,
                                                     at_time timestamptz DEFAULT NULL) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    now_ timestamptz := coalesce(at_time, clock_timestamp());
    state record;
BEGIN
    SELECT d.rate::double precision AS rate,
           greatest(d.burst - ceil(d.rate * fairlane.send_slot_v1(d.rate, d.burst)), 1)::double precision AS capacity,
           fairlane.slice_count_v1(d.rate, d.burst) AS slices
    INTO state
    FROM fairlane.destinations d WHERE d.id = destination;
    IF NOT FOUND OR segments <= 0 THEN
        RETURN;
    END IF;
    -- only the slices no claim holds right now: waiting for them here, with this transaction's queue rows
    -- locked, could deadlock with a claim that waits for those rows; tokens that find every slice busy are
    -- not returned (the bucket only ever errs on the side of the quota)
    WITH free AS (
        SELECT sl.slice FROM fairlane.destination_slices sl
        WHERE sl.destination_id = destination AND sl.slice < state.slices
        ORDER BY sl.slice
        FOR NO KEY UPDATE SKIP LOCKED
    ),
    share AS (
        SELECT segments::double precision / count(*) AS tokens FROM free HAVING count(*) > 0
    )
    UPDATE fairlane.destination_slices sl
    SET tokens = least(state.capacity / state.slices,
                       fairlane.slice_tokens_v1(sl.tokens, sl.refilled_at, sl.rate_factor, state.rate / state.slices,
                                                state.capacity / state.slices, now_) + share.tokens),
        refilled_at = greatest(now_, sl.refilled_at)
    FROM free, share
    WHERE sl.destination_id = destination AND sl.slice = free.slice;
END
$$;
