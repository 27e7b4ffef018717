-- Dispatch (SPEC §2-§4): queue membership, the claim (scores and pacing inside one transaction),
-- completion, retries, lease rescue, scheduled promotion and throttle back-off.
--
-- Scoring is start-time fair queueing over the destination's active queues: each queue carries a virtual
-- time `vtime` (seconds) that advances by segments / portion whenever it is served; the claim serves the
-- lowest virtual times first, so backlogged queues receive segments in proportion to their portions.
-- destination_state.virtual_time is the highest virtual time served so far; a queue that (re)activates
-- starts there, so an idle queue banks no credit. The functions take `at` (default clock_timestamp()) so
-- tests can drive time.

-- A rate averaged over about ten seconds (exponential decay, time constant 10 s), as of `at_time`, from
-- its value at `since`.
CREATE FUNCTION fairlane.decayed_rate_v1(rate double precision, since timestamptz, at_time timestamptz)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (coalesce(rate, 0) * exp(-greatest(extract(epoch FROM at_time - since), 0) / 10.0))::double precision
$$;

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

-- A queue joins (queued_count 0 -> n) or leaves (n -> 0) its destination's active set: a joining queue
-- starts at the destination's virtual time, and the sequence fairlane.shares_seq moves on, so the next
-- claim recomputes the portions (destination_state.portions_version catches up with the value it computed
-- from). A sequence takes no row lock: submissions never wait for claims here.
CREATE FUNCTION fairlane.queue_membership_v1() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.queued_count > 0 THEN
        NEW.vtime := greatest(NEW.vtime, (
            SELECT s.virtual_time FROM fairlane.destination_state s WHERE s.destination_id = NEW.destination_id));
        PERFORM pg_notify('fairlane_ready', NEW.destination_id::text);  -- wakes idle dispatchers
    ELSE
        NEW.portion := NULL;
    END IF;
    PERFORM nextval('fairlane.shares_seq');
    RETURN NEW;
END
$$;

-- Configuration that changes shares (weights, allocations, caps, quotas, senders) makes every
-- destination's portions stale.
CREATE FUNCTION fairlane.shares_changed_v1() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM nextval('fairlane.shares_seq');
    RETURN NULL;
END
$$;

CREATE FUNCTION fairlane.destination_created_v1() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO fairlane.destination_state (destination_id, tokens, refilled_at)
    VALUES (NEW.id, greatest(NEW.burst, 1), clock_timestamp());
    RETURN NULL;
END
$$;

-- Put messages back in their queues (or expire them when their validity has passed): after a retryable
-- error, a throttle, a release at shutdown, an expired lease or when a scheduled time arrives.
-- Queue counters are updated with the queues locked in id order.
CREATE FUNCTION fairlane.requeue_v1(message_ids bigint[], ready_at timestamptz[], reasons text[],
                                    at_time timestamptz)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    WITH moved AS (
        UPDATE fairlane.messages m
        SET status = CASE WHEN m.expires_at <= at_time THEN 'expired' ELSE 'queued' END,
            available_at = u.ready_at, claim_id = NULL, lease_until = NULL, updated_at = at_time
        FROM unnest(message_ids, ready_at, reasons) AS u(id, ready_at, reason)
        WHERE m.id = u.id
        RETURNING m.id, m.tenant_id, m.queue_id, m.segments, m.status, u.reason
    ),
    events AS (
        INSERT INTO fairlane.message_events (message_id, tenant_id, status, at, detail)
        SELECT mv.id, mv.tenant_id, mv.status, at_time, jsonb_build_object('reason', mv.reason) FROM moved mv
    ),
    counts AS (
        SELECT mv.queue_id, count(*) AS messages, sum(mv.segments) AS segments
        FROM moved mv WHERE mv.status = 'queued' GROUP BY mv.queue_id
    ),
    locked AS (
        SELECT q.id FROM fairlane.queues q WHERE q.id IN (SELECT c.queue_id FROM counts c)
        ORDER BY q.id FOR NO KEY UPDATE
    )
    UPDATE fairlane.queues q
    SET queued_count = q.queued_count + c.messages, queued_segments = q.queued_segments + c.segments
    FROM counts c JOIN locked l ON l.id = c.queue_id
    WHERE q.id = c.queue_id;
END
$$;

-- Claim up to max_messages ready messages of one destination, never more segments than its token bucket
-- holds (refilled at rate x AIMD factor; capacity burst less 50 ms of the rate, at least 1); a message that
-- may not go now is never claimed.
--   1. estimate the tokens without locking the bucket; refresh stale portions;
--   2. lock up to max_messages eligible active queues with the lowest virtual time (ties: oldest head
--      message, then lowest queue id), SKIP LOCKED so concurrent claimers take other queues;
--   3. share the tokens (at most one per message asked for) among them by raising their virtual times to a
--      common level (fluid fair queueing: queue i gets (level - vtime_i) x portion_i segments), and lock
--      that many head messages of each through the ready index (FOR UPDATE SKIP LOCKED, LIMIT fenced);
--   4. lock the bucket, take the tokens for what fits (a message may start while a token is left, so the
--      bucket can go below zero by less than one message), lease those messages, expire the dead ones,
--      advance the queues' virtual times, counters and rates, and the destination's.
-- The bucket row is locked only from step 4 to commit.
CREATE FUNCTION fairlane.claim_v1(destination bigint, max_messages integer, lease_seconds double precision,
                                  at_time timestamptz DEFAULT NULL)
RETURNS SETOF fairlane.claimed_message_v1
LANGUAGE plpgsql AS $$
DECLARE
    now_ timestamptz := coalesce(at_time, clock_timestamp());
    state record;
    expected double precision;
    budget double precision;
    queue_ids bigint[];
    queue_vtimes double precision[];
    queue_portions double precision[];
    n integer;
    k integer;
    sum_vr double precision := 0;
    sum_r double precision := 0;
    level double precision;
    allowances double precision[];
    picked_ids bigint[];
    picked_queues bigint[];
    picked_segments integer[];
    picked_expired boolean[];
    available double precision;
    factor double precision;
    used double precision := 0;
    take boolean[] := '{}';
    claim bigint;
    computed_version bigint;
    refreshed_at timestamptz;
BEGIN
    -- 1. Expected tokens (the real take is in step 4, under the bucket's lock).
    SELECT s.tokens, s.refilled_at, s.rate_factor, s.throttled_at, s.portions_version, s.virtual_time,
           (SELECT sq.last_value FROM fairlane.shares_seq sq) AS shares_version,
           s.portions_at,
           d.rate::double precision AS rate,
           -- the bucket holds the burst less 50 ms of the rate: the allowance for the time between a claim
           -- and the message's arrival at the carrier, so arrivals stay within rate + burst per second too
           greatest(d.burst - ceil(d.rate * 0.05), 1)::double precision AS capacity
    INTO state
    FROM fairlane.destination_state s JOIN fairlane.destinations d ON d.id = s.destination_id
    WHERE s.destination_id = destination;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    expected := least(state.capacity, state.tokens
        + state.rate * state.rate_factor * greatest(extract(epoch FROM now_ - state.refilled_at), 0));
    IF expected < 1 THEN
        RETURN;
    END IF;
    -- Portions follow membership and configuration changes, recomputed at most every 100 ms (with a
    -- thousand small tenants joining and leaving, every claim would otherwise rewrite every queue).
    computed_version := state.portions_version;
    refreshed_at := state.portions_at;
    IF state.shares_version > state.portions_version
       AND (state.portions_at IS NULL OR now_ - state.portions_at >= interval '100 milliseconds')
       -- one claimer recomputes at a time; the others go on with the portions they have
       AND pg_try_advisory_xact_lock(hashtext('fairlane.portions'), destination::integer) THEN
        refreshed_at := now_;
        IF fairlane.refresh_portions_v1(destination) THEN
            computed_version := state.shares_version;
        END IF;
    END IF;

    -- 2. Candidate queues, locked.
    SELECT array_agg(c.id ORDER BY c.vtime, c.head, c.id),
           array_agg(c.vtime ORDER BY c.vtime, c.head, c.id),  -- at most 1 s behind: bounded credit
           -- a queue that joined since the last refresh counts with the smallest known portion
           array_agg(coalesce(c.portion, c.smallest, state.rate) ORDER BY c.vtime, c.head, c.id)
    INTO queue_ids, queue_vtimes, queue_portions
    FROM (
        SELECT q.id, greatest(q.vtime, state.virtual_time - 1.0) AS vtime, q.portion,
               min(q.portion) OVER () AS smallest, q.head
        FROM (
            -- queues whose head can go now (one probe of the ready index finds it): a queue waiting out a
            -- retry delay or a sender cap is passed over (its virtual time stays behind, bounded to one
            -- second of credit when it comes back)
            SELECT q.id, q.vtime, q.portion, h.id AS head
            FROM fairlane.queues q
            CROSS JOIN LATERAL (
                SELECT m.id FROM fairlane.messages m
                WHERE m.queue_id = q.id AND m.status = 'queued'
                  AND (m.available_at IS NULL OR m.available_at <= now_)
                ORDER BY m.id LIMIT 1
            ) h
            WHERE q.destination_id = destination AND q.queued_count > 0
              AND (q.not_before IS NULL OR q.not_before <= now_)
              AND (q.portion IS NULL OR q.portion > 0)
            ORDER BY q.vtime, q.id
            LIMIT max_messages
            FOR NO KEY UPDATE OF q SKIP LOCKED
        ) q
    ) c;
    n := coalesce(array_length(queue_ids, 1), 0);
    IF n = 0 THEN
        RETURN;
    END IF;

    -- 3. Water level: the lowest `level` with sum over queues of max(0, level - vtime) x portion = budget,
    -- the segments this claim may take (tokens expected, at most one per message asked for).
    budget := least(floor(expected), max_messages);
    FOR i IN 1..n LOOP
        k := i;
        sum_vr := sum_vr + queue_vtimes[i] * queue_portions[i];
        sum_r := sum_r + queue_portions[i];
        level := (budget + sum_vr) / sum_r;
        EXIT WHEN i = n OR level <= queue_vtimes[i + 1];
    END LOOP;
    allowances := ARRAY(
        SELECT greatest((level - u.vtime) * u.portion, CASE WHEN u.ord = 1 THEN 1 ELSE 0 END)
        FROM unnest(queue_vtimes[1:k], queue_portions[1:k]) WITH ORDINALITY AS u(vtime, portion, ord)
        ORDER BY u.ord
    );
    -- each queue's head messages up to its allowance (a message may start while allowance is left), in one
    -- statement: an index probe per queue through the ready index, LIMIT fenced inside the LATERAL
    SELECT array_agg(p.id ORDER BY p.ord, p.id), array_agg(p.queue_id ORDER BY p.ord, p.id),
           array_agg(p.segments ORDER BY p.ord, p.id), array_agg(p.expired ORDER BY p.ord, p.id)
    INTO picked_ids, picked_queues, picked_segments, picked_expired
    FROM (
        SELECT a.ord, a.queue_id, a.allowance, m.id, m.segments, m.expired,
               coalesce(sum(m.segments) FILTER (WHERE NOT m.expired)
                        OVER (PARTITION BY a.queue_id ORDER BY m.id), 0) AS through
        FROM unnest(queue_ids[1:k], allowances) WITH ORDINALITY AS a(queue_id, allowance, ord)
        CROSS JOIN LATERAL (
            SELECT m.id, m.segments, m.expires_at <= now_ AS expired
            FROM fairlane.messages m
            WHERE m.queue_id = a.queue_id AND m.status = 'queued'
              AND (m.available_at IS NULL OR m.available_at <= now_)
            ORDER BY m.id
            LIMIT least(max_messages, ceil(a.allowance)::integer)
            FOR UPDATE SKIP LOCKED
        ) m
        WHERE a.allowance >= 0.5
    ) p
    WHERE p.expired OR p.through - p.segments < p.allowance;
    IF coalesce(array_length(picked_ids, 1), 0) = 0 THEN
        RETURN;
    END IF;

    -- 4. Take the tokens under the bucket's lock, then write.
    SELECT s.tokens, s.refilled_at, s.rate_factor, s.throttled_at INTO state.tokens, state.refilled_at,
           state.rate_factor, state.throttled_at
    FROM fairlane.destination_state s WHERE s.destination_id = destination FOR NO KEY UPDATE;
    -- refill up to the moment the lock was granted, never from a point before the last refill (a claim
    -- that waited for the lock must not count the same interval twice)
    IF at_time IS NULL THEN
        now_ := clock_timestamp();
    END IF;
    now_ := greatest(now_, state.refilled_at);
    factor := CASE
        WHEN state.throttled_at IS NULL OR now_ - state.throttled_at > interval '1 second'
            THEN least(1, state.rate_factor + 0.1 * greatest(extract(epoch FROM now_ - state.refilled_at), 0))
        ELSE state.rate_factor
    END;
    available := least(state.capacity, state.tokens
        + state.rate * state.rate_factor * greatest(extract(epoch FROM now_ - state.refilled_at), 0));
    FOR i IN 1..array_length(picked_ids, 1) LOOP
        IF i > max_messages THEN
            take := take || false;
        ELSIF picked_expired[i] THEN
            take := take || true;
        ELSIF used + picked_segments[i] <= available
              -- a message larger than the bucket goes alone, when the bucket is full
              OR (used = 0 AND picked_segments[i] > state.capacity AND available >= state.capacity) THEN
            take := take || true;
            used := used + picked_segments[i];
        ELSE
            take := take || false;
        END IF;
    END LOOP;
    claim := nextval('fairlane.claims_id_seq');

    RETURN QUERY
    WITH chosen AS (
        SELECT u.id, u.expired FROM unnest(picked_ids, picked_expired, take) AS u(id, expired, take) WHERE u.take
    ),
    updated AS (
        UPDATE fairlane.messages m
        SET status = CASE WHEN c.expired THEN 'expired' ELSE 'sending' END,
            claim_id = CASE WHEN c.expired THEN NULL ELSE claim END,
            lease_until = CASE WHEN c.expired THEN NULL ELSE now_ + make_interval(secs => lease_seconds) END,
            updated_at = now_
        FROM chosen c
        WHERE m.id = c.id
        RETURNING m.id, m.tenant_id, m.queue_id, m.status, m.recipient, m.body, m.segments, m.expires_at,
                  m.attempts
    ),
    events AS (
        INSERT INTO fairlane.message_events (message_id, tenant_id, status, at, detail)
        SELECT u.id, u.tenant_id, u.status, now_,
               CASE WHEN u.status = 'sending' THEN jsonb_build_object('claim', claim) END
        FROM updated u
    )
    SELECT u.id, claim, t.name, d.code, s.address, u.recipient, u.body, u.segments, u.expires_at, u.attempts
    FROM updated u
    JOIN fairlane.queues q ON q.id = u.queue_id
    JOIN fairlane.tenants t ON t.id = u.tenant_id
    JOIN fairlane.senders s ON s.id = q.sender_id
    JOIN fairlane.destinations d ON d.id = q.destination_id
    WHERE u.status = 'sending'
    ORDER BY u.id;

    WITH served AS (
        SELECT u.queue_id,
               count(*) AS messages,
               sum(u.segments) AS segments,
               coalesce(sum(u.segments) FILTER (WHERE NOT u.expired), 0) AS sent_segments
        FROM unnest(picked_queues, picked_segments, picked_expired, take) AS u(queue_id, segments, expired, take)
        WHERE u.take
        GROUP BY u.queue_id
    )
    UPDATE fairlane.queues q
    SET queued_count = q.queued_count - s.messages,
        queued_segments = q.queued_segments - s.segments,
        vtime = u.vtime + s.sent_segments / u.portion,
        not_before = CASE WHEN sd.rate_cap IS NULL THEN NULL
                          ELSE greatest(coalesce(q.not_before, now_), now_)
                               + make_interval(secs => s.sent_segments / sd.rate_cap) END,
        recent_rate = fairlane.decayed_rate_v1(q.recent_rate, q.rate_at, now_)
                      + s.sent_segments / 10.0,
        rate_at = now_
    FROM served s, fairlane.senders sd, unnest(queue_ids, queue_vtimes, queue_portions) AS u(id, vtime, portion)
    WHERE q.id = s.queue_id AND sd.id = q.sender_id AND u.id = q.id;

    UPDATE fairlane.destination_state s
    SET tokens = available - used,
        refilled_at = now_,
        rate_factor = factor,
        virtual_time = greatest(s.virtual_time, (
            SELECT max(u.vtime) FROM unnest(queue_ids, queue_vtimes) AS u(id, vtime)
            WHERE u.id = ANY (picked_queues))),
        portions_version = greatest(s.portions_version, computed_version),
        portions_at = greatest(s.portions_at, refreshed_at),
        recent_rate = fairlane.decayed_rate_v1(s.recent_rate, s.rate_at, now_)
                      + used / 10.0,
        rate_at = now_
    WHERE s.destination_id = destination;
END
$$;

-- Record what the gateway said about claimed messages. Only messages still leased under `claim` change
-- (a late answer after the lease was rescued is ignored). Outcomes:
--   sent       -> sent, with the provider's id;
--   failed     -> failed, with the provider's code (a permanent error);
--   retry      -> back to the queue after `delays` seconds, one attempt used; failed with
--                 retries_exhausted once max_attempts are used;
--   throttled  -> back to the queue after `delays` seconds; no attempt used;
--   release    -> back to the queue at once (a dispatcher shutting down); no attempt used.
-- Returns the number of messages changed.
CREATE FUNCTION fairlane.complete_v1(
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

-- Messages whose lease expired (their dispatcher died) go back to their queues, one attempt used; a
-- message that has used max_attempts fails with retries_exhausted.
CREATE FUNCTION fairlane.rescue_v1(max_attempts integer, at_time timestamptz DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    now_ timestamptz := coalesce(at_time, clock_timestamp());
    ids bigint[];
    failed_count integer;
BEGIN
    WITH expired_leases AS (
        SELECT m.id FROM fairlane.messages m
        WHERE m.status = 'sending' AND m.lease_until < now_
        ORDER BY m.lease_until
        LIMIT 10000
        FOR UPDATE SKIP LOCKED
    ),
    counted AS (
        UPDATE fairlane.messages m
        SET attempts = m.attempts + 1,
            status = CASE WHEN m.attempts + 1 >= max_attempts THEN 'failed' ELSE m.status END,
            error_code = CASE WHEN m.attempts + 1 >= max_attempts THEN 'retries_exhausted' ELSE m.error_code END,
            claim_id = CASE WHEN m.attempts + 1 >= max_attempts THEN NULL ELSE m.claim_id END,
            lease_until = CASE WHEN m.attempts + 1 >= max_attempts THEN NULL ELSE m.lease_until END
        FROM expired_leases e WHERE m.id = e.id
        RETURNING m.id, m.tenant_id, m.status
    ),
    failed_events AS (
        INSERT INTO fairlane.message_events (message_id, tenant_id, status, at, detail)
        SELECT c.id, c.tenant_id, 'failed', now_, '{"error_code": "retries_exhausted"}'::jsonb
        FROM counted c WHERE c.status = 'failed'
    )
    SELECT array_agg(c.id) FILTER (WHERE c.status = 'sending'), count(*) FILTER (WHERE c.status = 'failed')
    INTO ids, failed_count
    FROM counted c;
    IF ids IS NOT NULL THEN
        PERFORM fairlane.requeue_v1(ids, array_fill(NULL::timestamptz, ARRAY[array_length(ids, 1)]),
                                    array_fill('lease_expired'::text, ARRAY[array_length(ids, 1)]), now_);
    END IF;
    RETURN coalesce(array_length(ids, 1), 0) + failed_count;
END
$$;

-- Scheduled messages whose send_at has come join their queues (or expire).
CREATE FUNCTION fairlane.promote_v1(at_time timestamptz DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    now_ timestamptz := coalesce(at_time, clock_timestamp());
    ids bigint[];
BEGIN
    SELECT array_agg(d.id) INTO ids FROM (
        SELECT m.id FROM fairlane.messages m
        WHERE m.status = 'scheduled' AND m.send_at <= now_
        ORDER BY m.send_at
        LIMIT 10000
        FOR UPDATE SKIP LOCKED
    ) d;
    IF ids IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM fairlane.requeue_v1(ids, array_fill(NULL::timestamptz, ARRAY[array_length(ids, 1)]),
                                array_fill('send_at'::text, ARRAY[array_length(ids, 1)]), now_);
    RETURN array_length(ids, 1);
END
$$;

-- The destination's gateway throttled (HTTP 429): halve its effective rate, at most once a second and
-- not below 5% of the quota. The claim adds back 10% of the quota per second once a second has passed
-- without a throttle (AIMD, shared by every dispatcher through destination_state).
CREATE FUNCTION fairlane.throttle_v1(destination bigint, at_time timestamptz DEFAULT NULL) RETURNS double precision
LANGUAGE plpgsql AS $$
DECLARE
    now_ timestamptz := coalesce(at_time, clock_timestamp());
    factor double precision;
BEGIN
    UPDATE fairlane.destination_state s
    SET rate_factor = CASE
            WHEN s.throttled_at IS NULL OR now_ - s.throttled_at >= interval '1 second'
                THEN greatest(0.05, s.rate_factor * 0.5)
            ELSE s.rate_factor
        END,
        tokens = least(s.tokens, 0),
        refilled_at = now_,
        throttled_at = now_
    WHERE s.destination_id = destination
    RETURNING s.rate_factor INTO factor;
    RETURN factor;
END
$$;

-- A delivery receipt from a gateway: a sent message becomes delivered or undelivered. Found by the
-- provider's id or by our message id; repeated receipts change nothing; a receipt that overtakes the
-- gateway's answer (the message is still sending) is refused as retryable. Returns the message's status.
CREATE FUNCTION fairlane.receipt_v1(gateway text, provider_id text, message_id bigint, status text,
                                    error_code text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    target record;
BEGIN
    IF status IS NULL OR status NOT IN ('delivered', 'undelivered') THEN
        PERFORM fairlane.raise_v1('invalid_request', 'status', status,
                                  format('status %s is not delivered or undelivered', quote_literal(status)));
    END IF;
    IF provider_id IS NULL AND message_id IS NULL THEN
        PERFORM fairlane.raise_v1('invalid_request', 'provider_id', NULL, 'provider_id or id is required');
    END IF;
    SELECT m.id, m.tenant_id, m.status INTO target
    FROM fairlane.messages m
    JOIN fairlane.queues q ON q.id = m.queue_id
    JOIN fairlane.destinations d ON d.id = q.destination_id
    JOIN fairlane.gateways g ON g.id = d.gateway_id
    WHERE g.name = receipt_v1.gateway
      AND m.id IN (
          SELECT m2.id FROM fairlane.messages m2 WHERE m2.id = receipt_v1.message_id
          UNION ALL
          SELECT m3.id FROM fairlane.messages m3
          WHERE receipt_v1.message_id IS NULL AND m3.provider_id = receipt_v1.provider_id
      )
    LIMIT 1
    FOR UPDATE OF m;
    IF NOT FOUND THEN
        PERFORM fairlane.raise_v1('not_found', CASE WHEN message_id IS NULL THEN 'provider_id' ELSE 'id' END,
                                  coalesce(provider_id, message_id::text), 'no message of this gateway has that id');
    END IF;
    IF target.status IN ('queued', 'sending') THEN
        -- the receipt overtook the gateway's answer: the gateway should send it again shortly
        PERFORM fairlane.raise_v1('receipt_too_early', 'provider_id', coalesce(provider_id, message_id::text),
                                  'the message is not recorded as sent yet; retry the receipt');
    END IF;
    IF target.status = 'sent' THEN
        UPDATE fairlane.messages m
        SET status = receipt_v1.status, error_code = receipt_v1.error_code, updated_at = clock_timestamp()
        WHERE m.id = target.id;
        INSERT INTO fairlane.message_events (message_id, tenant_id, status, detail)
        VALUES (target.id, target.tenant_id, receipt_v1.status,
                jsonb_strip_nulls(jsonb_build_object('error_code', receipt_v1.error_code)));
        RETURN receipt_v1.status;
    END IF;
    RETURN target.status;
END
$$;
