-- How long a claimed message may take to reach the carrier (docs/decisions/0018): 50 ms, or up to half the
-- burst's worth of the rate when the burst is larger, at most a second. The bucket keeps that much of the
-- rate out of its capacity (claim_v3, return_tokens_v1), so what a claimer sends within its slot stays within
-- rate + burst in any second however the sends bunch; a larger burst buys slack for a busy dispatcher.
CREATE OR REPLACE FUNCTION fairlane.send_slot_v1(rate double precision, burst double precision)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT greatest(0.05, least(1.0, burst / 2 / rate))
$$;
