-- A new destination gets its state row and eight full slices (each is capped at its share of the
-- capacity when used).
CREATE OR REPLACE FUNCTION fairlane.destination_created_v2() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO fairlane.destination_state (destination_id) VALUES (NEW.id);
    INSERT INTO fairlane.destination_slices (destination_id, slice, tokens, refilled_at)
    SELECT NEW.id, i, greatest(NEW.burst, 1), clock_timestamp() FROM generate_series(0, 7) i;
    RETURN NULL;
END
$$;
