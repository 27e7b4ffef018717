-- A message claim_v2 leased to a dispatcher: what the gateway needs to send it, and the claim it belongs
-- to (complete_v1 takes the claim id back).
CREATE TYPE fairlane.claimed_message_v1 AS (
    message_id bigint,
    claim_id bigint,
    tenant text,
    destination text,
    sender text,
    recipient text,
    body text,
    segments integer,
    expires_at timestamptz,
    attempts integer
);
