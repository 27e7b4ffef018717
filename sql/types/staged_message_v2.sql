-- One row of an accept_v3 call, resolved: its message id (the original one when an idempotency key
-- replays), queue coordinates, segments, expiry, request hash and its first rule violation, if any.
CREATE TYPE fairlane.staged_message_v2 AS (
    ordinal bigint,
    message_id bigint,
    replayed boolean,
    tenant_id bigint,
    sender_id bigint,
    destination_id bigint,
    recipient text,
    body text,
    segments integer,
    encoding text,
    send_at timestamptz,
    expires_at timestamptz,
    validity_seconds integer,
    status_callback text,
    idempotency_key text,
    request_hash text,
    error fairlane.row_error_v2,
    -- its level of service: 0 high, 1 normal, 2 bulk (accept_v3)
    priority smallint
);
