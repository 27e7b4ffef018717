-- One message, named arguments: SELECT fairlane.submit(tenant => 'acme', recipient => '+15551234567',
-- body => 'hi', priority => 'high'). Returns the message id (the original one when an idempotency key replays).
CREATE OR REPLACE FUNCTION fairlane.submit(
    tenant text,
    recipient text,
    body text,
    sender text DEFAULT NULL,
    destination text DEFAULT NULL,
    idempotency_key text DEFAULT NULL,
    send_at timestamptz DEFAULT NULL,
    validity_seconds integer DEFAULT NULL,
    status_callback text DEFAULT NULL,
    priority text DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql SECURITY INVOKER AS $$
BEGIN
    INSERT INTO fairlane.outbox (
        tenant, recipient, body, sender, destination, idempotency_key, send_at, validity_seconds, status_callback,
        priority
    ) VALUES (
        submit.tenant, submit.recipient, submit.body, submit.sender, submit.destination,
        submit.idempotency_key, submit.send_at, submit.validity_seconds, submit.status_callback, submit.priority
    );
    RETURN current_setting('fairlane.last_message_id')::bigint;
END
$$;
