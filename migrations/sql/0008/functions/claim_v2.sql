-- Claim up to max_messages ready messages of one destination (the claim of dispatchers before claim_v3,
-- kept for them during a rolling upgrade, and for tests and tools that want rows): claim_v3's messages.
CREATE OR REPLACE FUNCTION fairlane.claim_v2(destination bigint, max_messages integer, lease_seconds double precision,
                                             at_time timestamptz DEFAULT NULL)
RETURNS SETOF fairlane.claimed_message_v1
LANGUAGE sql AS $$
    SELECT m.* FROM fairlane.claim_v3(destination, max_messages, lease_seconds, at_time) c, unnest(c.messages) m
$$;
