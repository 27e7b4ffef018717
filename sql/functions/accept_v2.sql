-- The submission path of submission_v1 (without a level of service): accept_v3, every message normal
-- (docs/decisions/0020). Kept for processes of the previous release during a rolling upgrade.
CREATE OR REPLACE FUNCTION fairlane.accept_v2(submissions fairlane.submission_v1[], strict boolean)
RETURNS TABLE (ordinal bigint, message_id bigint, replayed boolean, error fairlane.row_error_v2)
LANGUAGE sql AS $$
    SELECT a.ordinal, a.message_id, a.replayed, a.error
    FROM fairlane.accept_v3(
        ARRAY(SELECT ROW(s.tenant, s.recipient, s.body, s.sender, s.destination, s.idempotency_key, s.send_at,
                         s.validity_seconds, s.status_callback, NULL)::fairlane.submission_v2
              FROM unnest(submissions) WITH ORDINALITY AS s(tenant, recipient, body, sender, destination,
                                                            idempotency_key, send_at, validity_seconds,
                                                            status_callback, n)
              ORDER BY s.n),
        strict) a
$$;
