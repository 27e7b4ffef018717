-- A status change to record (record_events_v1), as the function that made it knows the message.
CREATE TYPE fairlane.new_event_v1 AS (
    message_id bigint,
    tenant_id bigint,
    status text,
    at timestamptz,
    detail jsonb,
    -- the message's finished_at: NULL while it is live (the event goes to message_events_live)
    finished_at timestamptz,
    -- the message's event_count with this event: the sequence number status callbacks carry
    sequence integer,
    -- the message's own status_callback (the tenant's is the fallback)
    status_callback text,
    recipient text,
    queue_id bigint,
    segments integer
);
