-- A slice's tokens at `at_time`: refilled at its rate x AIMD factor since it was last refilled (never from
-- a point before that), up to its capacity.
CREATE OR REPLACE FUNCTION fairlane.slice_tokens_v1(tokens double precision, refilled_at timestamptz,
                                         rate_factor double precision, slice_rate double precision,
                                         slice_capacity double precision, at_time timestamptz)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT least(slice_capacity,
                 tokens + slice_rate * rate_factor * greatest(extract(epoch FROM at_time - refilled_at), 0))
$$;
