-- Finish live messages (docs/decisions/0014): each leaves messages_live for messages_finished (the partition
-- of `at_time`) with its new status, its events move along into message_events_finished, its final event is
-- written (record_events_v1) and it is counted in usage_counters. Only messages still live in one of
-- `from_statuses` (and, when `claim` is given, leased under it) finish; the others are left alone. Per
-- message: the new status, the error code and message and the provider id it finishes with (NULL keeps the
-- message's), the attempts it used now (added), and its final event's detail. Returns the messages that
-- finished, with their queue, the status they had and their segments (callers keep queue counters).
CREATE OR REPLACE FUNCTION fairlane.finish_v1(
    message_ids bigint[], statuses text[], error_codes text[], error_messages text[], provider_ids text[],
    attempts_used integer[], details jsonb[], from_statuses text[], claim bigint, at_time timestamptz
) RETURNS TABLE (message_id bigint, queue_id bigint, previous_status text, segments integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    finished fairlane.new_event_v1[];
    previous text[];
BEGIN
    WITH gone AS (
        DELETE FROM fairlane.messages_live m
        USING unnest(message_ids, statuses, error_codes, error_messages, provider_ids, attempts_used, details)
              AS u(id, status, error_code, error_message, provider_id, attempts_used, detail)
        WHERE m.id = u.id AND m.status = ANY (from_statuses) AND (claim IS NULL OR m.claim_id = claim)
        RETURNING m.*, u.status AS new_status, u.error_code AS new_error_code, u.error_message AS new_error_message,
                  u.provider_id AS new_provider_id, u.attempts_used AS new_attempts, u.detail AS new_detail
    ),
    kept AS (
        INSERT INTO fairlane.messages_finished (
            id, tenant_id, queue_id, status, recipient, body, segments, encoding, send_at, expires_at,
            status_callback, idempotency_key, attempts, provider_id, error_code, error_message, created_at,
            updated_at, finished_at, event_count)
        SELECT g.id, g.tenant_id, g.queue_id, g.new_status, g.recipient, g.body, g.segments, g.encoding, g.send_at,
               g.expires_at, g.status_callback, g.idempotency_key, g.attempts + coalesce(g.new_attempts, 0),
               coalesce(g.new_provider_id, g.provider_id), coalesce(g.new_error_code, g.error_code),
               coalesce(g.new_error_message, g.error_message), g.created_at, at_time, at_time, g.event_count + 1
        FROM gone g
    ),
    moved AS (
        DELETE FROM fairlane.message_events_live e
        WHERE e.message_id IN (SELECT g.id FROM gone g)
        RETURNING e.*
    ),
    moved_in AS (
        INSERT INTO fairlane.message_events_finished (id, message_id, tenant_id, status, at, detail, finished_at)
        SELECT mv.id, mv.message_id, mv.tenant_id, mv.status, mv.at, mv.detail, at_time FROM moved mv
    )
    SELECT array_agg(ROW(g.id, g.tenant_id, g.new_status, at_time, g.new_detail, at_time, g.event_count + 1,
                         g.status_callback, g.recipient, g.queue_id, g.segments)::fairlane.new_event_v1
                     ORDER BY g.id),
           array_agg(g.status ORDER BY g.id)
    INTO finished, previous
    FROM gone g;
    IF finished IS NULL THEN
        RETURN;
    END IF;
    PERFORM fairlane.record_events_v1(finished);
    -- usage, by the UTC day of finishing; a slot per backend keeps concurrent dispatchers off one row; rows
    -- in key order, so two transactions writing the same counters lock them in the same order
    INSERT INTO fairlane.usage_counters AS c (tenant_id, destination_id, sender_id, day, status, slot, messages,
                                              segments)
    SELECT f.tenant_id, q.destination_id, q.sender_id, (at_time AT TIME ZONE 'UTC')::date, f.status,
           pg_backend_pid() % 8, f.messages, f.segments
    FROM (SELECT e.tenant_id, e.queue_id, e.status, count(*) AS messages, sum(e.segments) AS segments
          FROM unnest(finished) e GROUP BY e.tenant_id, e.queue_id, e.status) f
    JOIN fairlane.queues q ON q.id = f.queue_id
    ORDER BY f.tenant_id, q.destination_id, q.sender_id, f.status
    ON CONFLICT ON CONSTRAINT usage_counters_pkey
    DO UPDATE SET messages = c.messages + excluded.messages, segments = c.segments + excluded.segments;
    RETURN QUERY
    SELECT f.message_id, f.queue_id, previous[f.ordinality::integer], f.segments
    FROM unnest(finished) WITH ORDINALITY AS f;
END
$$;
