-- Claim up to max_messages ready messages of one destination and say when to claim next (the claim of
-- dispatchers before claim_v4, kept for them during a rolling upgrade): claim_v4, which adds quota windows and
-- levels of service (docs/decisions/0020).
CREATE OR REPLACE FUNCTION fairlane.claim_v3(
    destination bigint, max_messages integer, lease_seconds double precision, at_time timestamptz DEFAULT NULL,
    OUT messages fairlane.claimed_message_v1[], OUT ready_at timestamptz
)
LANGUAGE sql AS $$
    SELECT c.messages, c.ready_at FROM fairlane.claim_v4(destination, max_messages, lease_seconds, at_time) c
$$;
