-- One message to submit, as accept_v3 takes it: the columns of fairlane.outbox and the arguments of
-- fairlane.submit(), and the fields of the HTTP API's items (submit_json_v2); submission_v1 and its level of
-- service (`priority`: high, normal or bulk; NULL: normal; docs/decisions/0020).
CREATE TYPE fairlane.submission_v2 AS (
    tenant text,
    recipient text,
    body text,
    sender text,
    destination text,
    idempotency_key text,
    send_at timestamptz,
    validity_seconds integer,
    status_callback text,
    priority text
);
