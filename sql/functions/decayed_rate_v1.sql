-- A rate averaged over about ten seconds (exponential decay, time constant 10 s), as of `at_time`, from
-- its value at `since`.
CREATE OR REPLACE FUNCTION fairlane.decayed_rate_v1(rate double precision, since timestamptz, at_time timestamptz)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (coalesce(rate, 0) * exp(-greatest(extract(epoch FROM at_time - since), 0) / 10.0))::double precision
$$;
