-- One message to submit, as accept_v2 takes it: the columns of fairlane.outbox and the arguments of
-- fairlane.submit(), and the fields of the HTTP API's items (submit_json_v1).
CREATE TYPE fairlane.submission_v1 AS (
    tenant text,
    recipient text,
    body text,
    sender text,
    destination text,
    idempotency_key text,
    send_at timestamptz,
    validity_seconds integer,
    status_callback text
);
