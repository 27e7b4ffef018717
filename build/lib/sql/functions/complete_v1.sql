-- Record what the gateway said about claimed messages. Only messages still leased under `claim` change
-- (a late answer after the lease was rescued is ignored). Outcomes:
--   sent       -> sent, with the provider's id;
--   failed     -> failed, with the provider's code (a permanent error);
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
    changed integer;
    back bigint[];
    back_at timestamptz[];
    back_reasons text[];
    unknown text;
BEGIN
    SELECT o INTO unknown FROM unnest(outcomes) o
    WHERE o IS NULL OR o NOT IN ('sent', 'failed', 'retry', 'throttled', 'release') LIMIT 1;
    IF FOUND OR max_attempts IS NULL OR max_attempts < 1 THEN
        PERFORM fairlane.raise_v1('invalid_request', 'outcomes', coalesce(unknown, max_attempts::text),
                                  'outcomes are sent, failed, retry, throttled or release; max_attempts >= 1');
    END IF;
    WITH answers AS (
        SELECT u.*,
               coalesce(u.outcome = 'retry' AND m.attempts + 1 >= max_attempts, false) AS exhausted
        FROM unnest(message_ids, outcomes, provider_ids, error_codes, error_messages, delays)
             AS u(id, outcome, provider_id, error_code, error_message, delay)
        JOIN fairlane.messages m ON m.id = u.id AND m.claim_id = claim AND m.status = 'sending'
    ),
    finished AS (
        UPDATE fairlane.messages m
        SET status = CASE WHEN a.outcome = 'sent' THEN 'sent' ELSE 'failed' END,
            provider_id = a.provider_id,
            error_code = CASE WHEN a.exhausted THEN 'retries_exhausted' ELSE a.error_code END,
            error_message = a.error_message,
            attempts = m.attempts + 1,
            claim_id = NULL, lease_until = NULL, updated_at = now_
        FROM answers a
        WHERE m.id = a.id AND (a.outcome IN ('sent', 'failed') OR a.exhausted)
          AND m.claim_id = claim AND m.status = 'sending'  -- re-checked after a wait: a rescue may have won
        RETURNING m.id, m.tenant_id, m.status, m.provider_id, m.error_code, m.error_message
    ),
    finished_events AS (
        INSERT INTO fairlane.message_events (message_id, tenant_id, status, at, detail)
        SELECT f.id, f.tenant_id, f.status, now_,
               jsonb_strip_nulls(jsonb_build_object('provider_id', f.provider_id, 'error_code', f.error_code,
                                                    'error_message', f.error_message))
        FROM finished f
    ),
    retried AS (
        UPDATE fairlane.messages m
        SET attempts = m.attempts + CASE WHEN a.outcome = 'retry' THEN 1 ELSE 0 END,
            error_code = coalesce(a.error_code, m.error_code),
            error_message = coalesce(a.error_message, m.error_message)
        FROM answers a
        WHERE m.id = a.id AND a.outcome IN ('retry', 'throttled', 'release') AND NOT a.exhausted
          AND m.claim_id = claim AND m.status = 'sending'
        RETURNING m.id, now_ + make_interval(secs => coalesce(a.delay, 0)) AS ready_at, a.outcome
    )
    SELECT (SELECT count(*) FROM finished) + count(r.id), array_agg(r.id), array_agg(r.ready_at),
           array_agg(r.outcome)
    INTO changed, back, back_at, back_reasons
    FROM retried r;
    IF back IS NOT NULL THEN
        PERFORM fairlane.requeue_v1(back, back_at, back_reasons, now_);
    END IF;
    RETURN changed;
END
$$;
