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
    exhausted bigint[] := '{}';
    finishing record;
    finished_count integer;
    back bigint[];
    back_at timestamptz[];
    back_reasons text[];
BEGIN
    SELECT o INTO unknown FROM unnest(outcomes) o
    WHERE o IS NULL OR o NOT IN ('sent', 'failed', 'retry', 'throttled', 'release') LIMIT 1;
    IF FOUND OR max_attempts IS NULL OR max_attempts < 1 THEN
        PERFORM fairlane.raise_v1('invalid_request', 'outcomes', coalesce(unknown, max_attempts::text),
                                  'outcomes are sent, failed, retry, throttled or release; max_attempts >= 1');
    END IF;
    -- a retry that uses the last attempt fails the message instead
    IF 'retry' = ANY (outcomes) THEN
        exhausted := ARRAY(
            SELECT m.id FROM unnest(message_ids, outcomes) AS u(id, outcome)
            JOIN fairlane.messages_live m ON m.id = u.id AND m.claim_id = claim AND m.status = 'sending'
            WHERE u.outcome = 'retry' AND m.attempts + 1 >= max_attempts);
    END IF;
    -- sent, failed and exhausted: finished (finish_v1 takes only messages still leased under this claim)
    SELECT array_agg(u.id) AS ids,
           array_agg(CASE WHEN u.outcome = 'sent' THEN 'sent' ELSE 'failed' END) AS statuses,
           array_agg(e.error_code) AS error_codes,
           array_agg(u.error_message) AS error_messages,
           array_agg(u.provider_id) AS provider_ids,
           array_agg(jsonb_strip_nulls(jsonb_build_object(
               'provider_id', u.provider_id, 'error_code', e.error_code, 'error_message', u.error_message)))
               AS details
    INTO finishing
    FROM unnest(message_ids, outcomes, provider_ids, error_codes, error_messages)
         AS u(id, outcome, provider_id, error_code, error_message)
    CROSS JOIN LATERAL (SELECT CASE WHEN u.id = ANY (exhausted) THEN 'retries_exhausted' ELSE u.error_code END
                        AS error_code) e
    WHERE u.outcome IN ('sent', 'failed') OR u.id = ANY (exhausted);
    SELECT count(*) INTO finished_count
    FROM fairlane.finish_v1(finishing.ids, finishing.statuses, finishing.error_codes, finishing.error_messages,
                            finishing.provider_ids, array_fill(1, ARRAY[coalesce(cardinality(finishing.ids), 0)]),
                            finishing.details, ARRAY['sending'], claim, now_);
    -- the others back to their queues: a retry uses an attempt, a throttle or a release does not
    WITH counted AS (
        UPDATE fairlane.messages_live m
        SET attempts = m.attempts + CASE WHEN u.outcome = 'retry' THEN 1 ELSE 0 END,
            error_code = coalesce(u.error_code, m.error_code),
            error_message = coalesce(u.error_message, m.error_message)
        FROM unnest(message_ids, outcomes, error_codes, error_messages, delays)
             AS u(id, outcome, error_code, error_message, delay)
        WHERE m.id = u.id AND u.outcome IN ('retry', 'throttled', 'release') AND NOT (u.id = ANY (exhausted))
          AND m.claim_id = claim AND m.status = 'sending'
        RETURNING m.id, now_ + make_interval(secs => coalesce(u.delay, 0)) AS ready_at, u.outcome
    )
    SELECT array_agg(c.id), array_agg(c.ready_at), array_agg(c.outcome) INTO back, back_at, back_reasons
    FROM counted c;
    IF back IS NOT NULL THEN
        PERFORM fairlane.requeue_v1(back, back_at, back_reasons, now_);
    END IF;
    RETURN finished_count + coalesce(cardinality(back), 0);
END
$$;
