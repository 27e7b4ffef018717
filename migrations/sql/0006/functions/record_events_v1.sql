-- Write status changes (SPEC §4): each an event of its message (in message_events_live while the message
-- is live, else in the finished partition of its finished_at) and, when the message or its tenant has a
-- status_callback, a row in fairlane.callbacks carrying the signed body to POST, built now (the event is
-- immutable, so every attempt sends the same bytes). NOTIFY fairlane_callbacks wakes the callback sender.
-- At most one event per message per call (callers change a message once per statement).
CREATE OR REPLACE FUNCTION fairlane.record_events_v1(events fairlane.new_event_v1[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    announced integer;
BEGIN
    IF coalesce(cardinality(events), 0) = 0 THEN
        RETURN;
    END IF;
    WITH numbered AS (
        SELECT nextval('fairlane.message_events_id_seq') AS id, e.*
        FROM unnest(events) e
    ),
    written AS (
        INSERT INTO fairlane.message_events (id, message_id, tenant_id, status, at, detail, finished_at)
        SELECT n.id, n.message_id, n.tenant_id, n.status, n.at, n.detail, n.finished_at FROM numbered n
    ),
    announced AS (
        INSERT INTO fairlane.callbacks (event_id, tenant_id, url, payload)
        SELECT n.id, n.tenant_id, coalesce(n.status_callback, t.status_callback),
               json_build_object(
                   'type', 'message.status',
                   'timestamp', to_char(n.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                   'data', json_build_object(
                       'event_id', n.id::text,
                       'sequence', n.sequence,
                       'message_id', n.message_id::text,
                       'status', n.status,
                       'at', to_char(n.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                       'to', n.recipient,
                       'from', s.address,
                       'destination', d.code,
                       'segments', n.segments,
                       'error_code', n.detail ->> 'error_code',
                       'error_message', n.detail ->> 'error_message',
                       'detail', n.detail
                   )
               )::text
        FROM numbered n
        JOIN fairlane.tenants t ON t.id = n.tenant_id
        JOIN fairlane.queues q ON q.id = n.queue_id
        JOIN fairlane.senders s ON s.id = q.sender_id
        JOIN fairlane.destinations d ON d.id = q.destination_id
        WHERE coalesce(n.status_callback, t.status_callback) IS NOT NULL
        RETURNING 1
    )
    SELECT count(*) INTO announced FROM announced;
    IF announced > 0 THEN
        PERFORM pg_notify('fairlane_callbacks', '');
    END IF;
END
$$;
