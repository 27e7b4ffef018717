-- A queue joins (queued_count 0 -> n) or leaves (n -> 0) its destination's active set: a joining queue
-- starts at the destination's virtual time (the highest of its slices'), so an idle queue banks no credit;
-- and the sequence fairlane.shares_seq moves on, so the next claim recomputes the portions
-- (destination_state.portions_version catches up with the value it computed from). A sequence takes no row
-- lock: submissions never wait for claims here.
CREATE OR REPLACE FUNCTION fairlane.queue_membership_v2() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.queued_count > 0 THEN
        NEW.vtime := greatest(NEW.vtime, (
            SELECT max(s.virtual_time) FROM fairlane.destination_slices s WHERE s.destination_id = NEW.destination_id));
        PERFORM pg_notify('fairlane_ready', NEW.destination_id::text);  -- wakes idle dispatchers
    ELSE
        NEW.portion := NULL;
    END IF;
    PERFORM nextval('fairlane.shares_seq');
    RETURN NEW;
END
$$;
