-- Cancel a tenant's message while it is queued or scheduled (SPEC §4). Races with a claim are decided by
-- the row lock: the claim skips a row being canceled, and a cancel that waited for a claim finds the
-- message sending and refuses. Returns the new status.
CREATE OR REPLACE FUNCTION fairlane.cancel_v1(tenant bigint, message bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    current record;
BEGIN
    SELECT m.status, m.queue_id, m.segments INTO current
    FROM fairlane.messages m WHERE m.id = message AND m.tenant_id = tenant
    FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        PERFORM fairlane.raise_v1('not_found', 'id', message::text, format('message %s not found', message));
    END IF;
    IF current.status NOT IN ('queued', 'scheduled') THEN
        PERFORM fairlane.raise_v1('not_cancelable', 'status', current.status,
                                  format('message %s is %s; only queued or scheduled messages can be canceled',
                                         message, current.status));
    END IF;
    UPDATE fairlane.messages m SET status = 'canceled', updated_at = now(), available_at = NULL WHERE m.id = message;
    IF current.status = 'queued' THEN
        UPDATE fairlane.queues q
        SET queued_count = q.queued_count - 1, queued_segments = q.queued_segments - current.segments
        WHERE q.id = current.queue_id;
    END IF;
    INSERT INTO fairlane.message_events (message_id, tenant_id, status, detail)
    VALUES (message, tenant, 'canceled', jsonb_build_object('reason', 'canceled by the tenant'));
    RETURN 'canceled';
END
$$;
