-- Functions behind the HTTP API (SPEC §5). The API authenticates tenants and checks the JSON types; the
-- rules themselves are fairlane.accept_v2's, shared with the outbox and fairlane.submit().

-- Submit messages given as a JSON array of objects with the fields of fairlane.submission_v1, each
-- judged on its own (a bad item does not stop the others). One row per item, in order: the message as
-- fairlane.message_details shows it (the original one when an idempotency key replays), or the error.
CREATE TYPE fairlane.accepted_v1 AS (
    ordinal bigint, message_id bigint, replayed boolean, error fairlane.row_error_v2
);

CREATE FUNCTION fairlane.submit_json_v1(items jsonb)
RETURNS TABLE (ordinal bigint, replayed boolean, error jsonb, message jsonb)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan  -- planned once per session, not per call (up to 1,000 items)
AS $$
#variable_conflict use_column
DECLARE
    accepted fairlane.accepted_v1[];
BEGIN
    -- a statement of its own, so that the next one sees the messages accept_v2 wrote
    accepted := ARRAY(
        SELECT ROW(a.ordinal, a.message_id, a.replayed, a.error)::fairlane.accepted_v1
        FROM fairlane.accept_v2(
            ARRAY(SELECT r FROM jsonb_populate_recordset(NULL::fairlane.submission_v1, items) r), false
        ) a
    );
    RETURN QUERY
    SELECT a.ordinal, a.replayed,
           CASE WHEN (a.error).code IS NOT NULL THEN to_jsonb(a.error) END,
           to_jsonb(v) - 'tenant_id'
    FROM unnest(accepted) a
    LEFT JOIN fairlane.message_details v ON v.id = a.message_id
    ORDER BY a.ordinal;
END
$$;

-- Cancel a tenant's message while it is queued or scheduled (SPEC §4). Races with a claim are decided by
-- the row lock: the claim skips a row being canceled, and a cancel that waited for a claim finds the
-- message sending and refuses. Returns the new status.
CREATE FUNCTION fairlane.cancel_v1(tenant bigint, message bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    current record;
BEGIN
    SELECT m.status, m.queue_id, m.segments INTO current
    FROM fairlane.messages m WHERE m.id = message AND m.tenant_id = tenant
    FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        PERFORM fairlane.raise_v1('not_found', 'id', message::text, format('message %s not found', message));
    END IF;
    IF current.status NOT IN ('queued', 'scheduled') THEN
        PERFORM fairlane.raise_v1('not_cancelable', 'status', current.status,
                                  format('message %s is %s; only queued or scheduled messages can be canceled',
                                         message, current.status));
    END IF;
    UPDATE fairlane.messages m SET status = 'canceled', updated_at = now(), available_at = NULL WHERE m.id = message;
    IF current.status = 'queued' THEN
        UPDATE fairlane.queues q
        SET queued_count = q.queued_count - 1, queued_segments = q.queued_segments - current.segments
        WHERE q.id = current.queue_id;
    END IF;
    INSERT INTO fairlane.message_events (message_id, tenant_id, status, detail)
    VALUES (message, tenant, 'canceled', jsonb_build_object('reason', 'canceled by the tenant'));
    RETURN 'canceled';
END
$$;
