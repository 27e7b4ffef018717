-- Status callbacks (SPEC §4): every status change of a message whose message or tenant has a
-- status_callback URL gets a row in fairlane.callbacks, written in the same transaction as the event, so
-- the callback sender (`fairlane callbacks`) delivers each at least once. NOTIFY wakes the sender.
CREATE FUNCTION fairlane.events_callbacks_v1() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO fairlane.callbacks (event_id, tenant_id, url)
    SELECT e.id, e.tenant_id, coalesce(m.status_callback, t.status_callback)
    FROM new_events e
    JOIN fairlane.messages m ON m.id = e.message_id
    JOIN fairlane.tenants t ON t.id = e.tenant_id
    WHERE coalesce(m.status_callback, t.status_callback) IS NOT NULL;
    IF FOUND THEN
        PERFORM pg_notify('fairlane_callbacks', '');
    END IF;
    RETURN NULL;
END
$$;
