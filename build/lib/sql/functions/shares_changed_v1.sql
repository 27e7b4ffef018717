-- Configuration that changes shares (weights, allocations, caps, quotas, senders) makes every
-- destination's portions stale.
CREATE OR REPLACE FUNCTION fairlane.shares_changed_v1() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM nextval('fairlane.shares_seq');
    RETURN NULL;
END
$$;
