-- Functions behind the HTTP API (SPEC §5). The API authenticates tenants and checks the JSON types; the
-- rules themselves are fairlane.accept_v3's, shared with the outbox and fairlane.submit().
-- Submit messages given as a JSON array of objects with the fields of fairlane.submission_v2 (with a level
-- of service: docs/decisions/0020), each judged on its own (a bad item does not stop the others). One row per
-- item, in order: the message as fairlane.message_details shows it (the original one when an idempotency key
-- replays), or the error.
CREATE OR REPLACE FUNCTION fairlane.submit_json_v2(items jsonb)
RETURNS TABLE (ordinal bigint, replayed boolean, error jsonb, message jsonb)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan  -- planned once per session, not per call (up to 1,000 items)
AS $$
#variable_conflict use_column
DECLARE
    accepted fairlane.accepted_v1[];
BEGIN
    -- a statement of its own, so that the next one sees the messages accept_v3 wrote
    accepted := ARRAY(
        SELECT ROW(a.ordinal, a.message_id, a.replayed, a.error)::fairlane.accepted_v1
        FROM fairlane.accept_v3(
            ARRAY(SELECT r FROM jsonb_populate_recordset(NULL::fairlane.submission_v2, items) r), false
        ) a
    );
    -- a new message is live (one index probe); a replayed one may have finished (a probe per partition)
    RETURN QUERY
    SELECT a.ordinal, a.replayed,
           CASE WHEN (a.error).code IS NOT NULL THEN to_jsonb(a.error) END,
           CASE WHEN a.replayed
                THEN (SELECT to_jsonb(v) - 'tenant_id' FROM fairlane.message_details v WHERE v.id = a.message_id)
                ELSE (SELECT to_jsonb(v) - 'tenant_id' FROM fairlane.message_details v
                      WHERE v.id = a.message_id AND v.finished_at IS NULL)
           END
    FROM unnest(accepted) a
    ORDER BY a.ordinal;
END
$$;
