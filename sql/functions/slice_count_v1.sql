-- The slices of a destination: one per 4 segments of capacity (the burst less 50 ms of the rate), at least
-- 1 and at most 8. Tokens refill into every slice at once, so at low rates a claim for one message must
-- gather them from several slices; slices of at least 4 segments keep that to a few.
CREATE OR REPLACE FUNCTION fairlane.slice_count_v1(rate numeric, burst integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT least(8, greatest(floor((burst - ceil(rate * 0.05)) / 4), 1))::integer
$$;
