-- Record what the gateway said about claimed messages. Only messages still leased under `claim` change
-- (a late answer after the lease was rescued is ignored). Outcomes:
--   sent       -> sent, with the provider's id (finished);
--   failed     -> failed, with the provider's code (a permanent error; finished);
--   retry      -> back to the queue after `delays` seconds, one attempt used; failed with
--                 retries_exhausted once max_attempts are used;
--   throttled  -> back to the queue after `delays` seconds; no attempt used;
--   release    -> back to the queue at once (a dispatcher shutting down); no attempt used.
-- Returns the number of messages changed.
CREATE OR REPLACE FUNCTION fairlane.complete_v1(
    claim bigint, message_ids bigint[], outcomes text[], provider_ids text[], error_codes text[],
    error_messages text[], delays double precision[], max_attempts integer, at_time timestamptz DEFAULT NULL
) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    now_ timestamptz := coalesce(at_time, clock_timestamp());
    unknown text;
    done record;
    finished_count integer;
BEGIN
    SELECT o INTO unknown FROM unnest(outcomes) o
    WHERE o IS NULL OR o NOT IN ('sent', 'failed', 'retry', 'throttled', 'release') LIMIT 1;
    IF FOUND OR max_attempts IS NULL OR max_attempts < 1 THEN
        PERFORM fairlane.raise_v1('invalid_request', 'outcomes', coalesce(unknown, max_attempts::text),
                                  'outcomes are sent, failed, retry, throttled or release; max_attempts >= 1');
    END IF;
    -- the answers for messages still leased under this claim, locked; a retry that uses the last attempt
    -- fails the message instead
    SELECT array_agg(a.id ORDER BY a.id) FILTER (WHERE a.finishes) AS ids,
           array_agg(CASE WHEN a.outcome = 'sent' THEN 'sent' ELSE 'failed' END ORDER BY a.id)
               FILTER (WHERE a.finishes) AS statuses,
           array_agg(CASE WHEN a.exhausted THEN 'retries_exhausted' ELSE a.error_code END ORDER BY a.id)
               FILTER (WHERE a.finishes) AS error_codes,
           array_agg(a.error_message ORDER BY a.id) FILTER (WHERE a.finishes) AS error_messages,
           array_agg(a.provider_id ORDER BY a.id) FILTER (WHERE a.finishes) AS provider_ids,
           array_agg(jsonb_strip_nulls(jsonb_build_object(
               'provider_id', a.provider_id,
               'error_code', CASE WHEN a.exhausted THEN 'retries_exhausted' ELSE a.error_code END,
               'error_message', a.error_message))
               ORDER BY a.id) FILTER (WHERE a.finishes) AS details,
           array_agg(a.id ORDER BY a.id) FILTER (WHERE NOT a.finishes) AS back_ids,
           array_agg(now_ + make_interval(secs => coalesce(a.delay, 0)) ORDER BY a.id)
               FILTER (WHERE NOT a.finishes) AS back_at,
           array_agg(a.outcome ORDER BY a.id) FILTER (WHERE NOT a.finishes) AS back_reasons,
           array_agg(a.error_code ORDER BY a.id) FILTER (WHERE NOT a.finishes) AS back_error_codes,
           array_agg(a.error_message ORDER BY a.id) FILTER (WHERE NOT a.finishes) AS back_error_messages,
           array_agg(CASE WHEN a.outcome = 'retry' THEN 1 ELSE 0 END ORDER BY a.id)
               FILTER (WHERE NOT a.finishes) AS back_attempts
    INTO done
    FROM (
        SELECT u.*, e.exhausted, u.outcome IN ('sent', 'failed') OR e.exhausted AS finishes
        FROM unnest(message_ids, outcomes, provider_ids, error_codes, error_messages, delays)
             AS u(id, outcome, provider_id, error_code, error_message, delay)
        JOIN fairlane.messages_live m ON m.id = u.id AND m.claim_id = claim AND m.status = 'sending'
        CROSS JOIN LATERAL (SELECT coalesce(u.outcome = 'retry' AND m.attempts + 1 >= max_attempts, false)
                            AS exhausted) e
        ORDER BY u.id
        FOR NO KEY UPDATE OF m
    ) a;
    SELECT count(*) INTO finished_count
    FROM fairlane.finish_v1(done.ids, done.statuses, done.error_codes, done.error_messages, done.provider_ids,
                            array_fill(1, ARRAY[coalesce(cardinality(done.ids), 0)]), done.details,
                            ARRAY['sending'], claim, now_);
    IF done.back_ids IS NOT NULL THEN
        UPDATE fairlane.messages_live m
        SET attempts = m.attempts + u.used,
            error_code = coalesce(u.error_code, m.error_code),
            error_message = coalesce(u.error_message, m.error_message)
        FROM unnest(done.back_ids, done.back_attempts, done.back_error_codes, done.back_error_messages)
             AS u(id, used, error_code, error_message)
        WHERE m.id = u.id;
        PERFORM fairlane.requeue_v1(done.back_ids, done.back_at, done.back_reasons, now_);
    END IF;
    RETURN finished_count + coalesce(cardinality(done.back_ids), 0);
END
$$;
