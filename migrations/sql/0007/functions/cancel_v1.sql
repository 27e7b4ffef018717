-- Cancel a tenant's message while it is queued or scheduled (SPEC §4). Races with a claim are decided by
-- the row lock: the claim skips a row being canceled, and a cancel that waited for a claim finds the
-- message sending and refuses. A scheduled message leaves its tenant's count (tenants.scheduled_count), a queued
-- one its queue's. Returns the new status.
CREATE OR REPLACE FUNCTION fairlane.cancel_v1(tenant bigint, message bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    current record;
    finished_status text;  -- why it cannot be canceled: sending, or its finished status
BEGIN
    SELECT m.status, m.queue_id, m.segments INTO current
    FROM fairlane.messages_live m WHERE m.id = message AND m.tenant_id = tenant
    FOR NO KEY UPDATE;
    IF FOUND THEN
        finished_status := CASE WHEN current.status = 'sending' THEN 'sending' END;
    ELSE
        SELECT m.status INTO finished_status
        FROM fairlane.messages_finished m WHERE m.id = message AND m.tenant_id = tenant;
        IF NOT FOUND THEN
            PERFORM fairlane.raise_v1('not_found', 'id', message::text, format('message %s not found', message));
        END IF;
    END IF;
    IF finished_status IS NOT NULL THEN
        PERFORM fairlane.raise_v1('not_cancelable', 'status', finished_status,
                                  format('message %s is %s; only queued or scheduled messages can be canceled',
                                         message, finished_status));
    END IF;
    PERFORM FROM fairlane.finish_v1(ARRAY[message], ARRAY['canceled'], ARRAY[NULL::text], ARRAY[NULL::text],
                                    ARRAY[NULL::text], ARRAY[0],
                                    ARRAY[jsonb_build_object('reason', 'canceled by the tenant')],
                                    ARRAY['queued', 'scheduled'], NULL, clock_timestamp());
    IF current.status = 'scheduled' THEN
        UPDATE fairlane.tenants t SET scheduled_count = t.scheduled_count - 1 WHERE t.id = tenant;
    END IF;
    IF current.status = 'queued' THEN
        UPDATE fairlane.queues q
        SET queued_count = q.queued_count - 1, queued_segments = q.queued_segments - current.segments
        WHERE q.id = current.queue_id;
    END IF;
    RETURN 'canceled';
END
$$;
