-- Dispatch (SPEC §2-§4). Scoring is start-time fair queueing over the destination's active queues: each
-- queue carries a virtual time `vtime` (seconds) that advances by segments / portion whenever it is served;
-- the claim serves the lowest virtual times first, so backlogged queues receive segments in proportion to
-- their portions. The destination's virtual time is the highest its bucket slices have served; a queue that
-- (re)activates starts there, so an idle queue banks no credit (queue_membership_v2).
-- The destination's token bucket is split into slices (docs/decisions/0011, slice_count_v1), so concurrent
-- claimers of one destination lock different rows instead of queueing on one; and a claimer that finds
-- every eligible queue locked by other claims shares them instead of coming back empty.
-- Like the other dispatch functions, it takes `at_time` (default clock_timestamp()) so tests can drive time.
--
-- Claim up to max_messages ready messages of one destination, never more segments than its token bucket
-- holds (refilled at rate x AIMD factor; capacity the burst less the send slot's worth of the rate,
-- send_slot_v1, at least 1); a message that may not go now is never claimed.
--   1. estimate the tokens of the destination's slices without locking them; refresh stale portions;
--   2. lock up to max_messages eligible active queues with the lowest virtual time (ties: oldest head
--      message, then lowest queue id), SKIP LOCKED so concurrent claimers take other queues; when other
--      claims hold every eligible queue, take the first ones unlocked and share them (their messages are
--      still locked one by one, and their rows are written last, in id order, after the other claims);
--   3. share the tokens (at most one per message asked for) among them by raising their virtual times to a
--      common level (fluid fair queueing: queue i gets (level - vtime_i) x portion_i segments), and lock
--      that many head messages of each through the ready index (FOR UPDATE SKIP LOCKED, LIMIT fenced);
--   4. lock as many slices as those messages need, the fullest first, SKIP LOCKED (concurrent claimers take
--      other slices), take the tokens for what fits (a message may start while a token is left, so the
--      tokens can go below zero by less than one message), lease those messages, expire the dead ones,
--      advance the queues' virtual times, counters and rates, and the slices'.
--   5. say when the next claim should come (`ready_at`): when the bucket will hold `target` tokens again
--      (50 ms of the rate, at most the batch and half the bucket's capacity — a full bucket wastes its refill —,
--      at least one segment), so a claimer of a rate-limited destination waits for its tokens instead of
--      polling for them; NULL when nothing is waiting to go (an idle claimer waits for a NOTIFY on
--      fairlane_ready).
-- Returns the leased messages and ready_at.
CREATE OR REPLACE FUNCTION fairlane.claim_v3(
    destination bigint, max_messages integer, lease_seconds double precision, at_time timestamptz DEFAULT NULL,
    OUT messages fairlane.claimed_message_v1[], OUT ready_at timestamptz
)
LANGUAGE plpgsql AS $$
DECLARE
    now_ timestamptz := coalesce(at_time, clock_timestamp());
    state record;
    factor double precision;  -- the AIMD factor in use (the highest of the slices')
    target double precision;  -- tokens worth a claim
    slice_rate double precision;
    slice_capacity double precision;
    estimates double precision[];  -- each slice's expected tokens, most first
    expected double precision;
    destination_vtime double precision;
    shared boolean := false;
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
    needed double precision;
    slices_wanted integer;
    covered double precision;  -- the expected tokens of the first slices_wanted slices
    slice_ids integer[];
    slice_tokens double precision[];
    slice_times timestamptz[];
    slice_factors double precision[];
    slice_draws double precision[];
    available double precision := 0;
    used double precision := 0;
    left_over double precision;
    take boolean[] := '{}';
    claim bigint;
    expired_ids bigint[];
    leased fairlane.messages_live[];
BEGIN
    messages := '{}';
    -- 1. Expected tokens (the real take is in step 4, under the slices' locks).
    SELECT d.rate::double precision AS rate,
           -- the bucket holds the burst less the send slot's worth of the rate: the allowance for the time
           -- between a claim and the message's arrival at the carrier, so arrivals stay within rate + burst
           -- per second too
           greatest(d.burst - ceil(d.rate * fairlane.send_slot_v1(d.rate, d.burst)), 1)::double precision
               AS capacity,
           fairlane.slice_count_v1(d.rate, d.burst) AS slices,
           s.portions_version, s.portions_at, (SELECT sq.last_value FROM fairlane.shares_seq sq) AS shares_version
    INTO state
    FROM fairlane.destination_state s JOIN fairlane.destinations d ON d.id = s.destination_id
    WHERE s.destination_id = destination;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    slice_rate := state.rate / state.slices;
    slice_capacity := state.capacity / state.slices;
    SELECT array_agg(e.tokens ORDER BY e.tokens DESC), sum(e.tokens), max(e.virtual_time), max(e.rate_factor)
    INTO estimates, expected, destination_vtime, factor
    FROM (
        SELECT fairlane.slice_tokens_v1(sl.tokens, sl.refilled_at, sl.rate_factor, slice_rate, slice_capacity, now_)
                   AS tokens,
               sl.virtual_time, sl.rate_factor
        FROM fairlane.destination_slices sl
        WHERE sl.destination_id = destination AND sl.slice < state.slices
    ) e;
    target := greatest(1, least(state.capacity / 2, max_messages, state.rate * 0.05));
    IF coalesce(expected, 0) < 1 THEN
        ready_at := now_ + make_interval(secs => (target - coalesce(expected, 0)) / (state.rate * factor));
        RETURN;
    END IF;
    -- Portions follow membership and configuration changes, recomputed at most every 100 ms (with a
    -- thousand small tenants joining and leaving, every claim would otherwise rewrite every queue).
    IF state.shares_version > state.portions_version
       AND (state.portions_at IS NULL OR now_ - state.portions_at >= interval '100 milliseconds')
       -- one claimer recomputes at a time; the others go on with the portions they have
       AND pg_try_advisory_xact_lock(hashtext('fairlane.portions'), destination::integer) THEN
        UPDATE fairlane.destination_state s
        SET portions_version = CASE WHEN fairlane.refresh_portions_v1(destination)
                                    THEN greatest(s.portions_version, state.shares_version)
                                    ELSE s.portions_version END,
            portions_at = greatest(s.portions_at, now_)
        WHERE s.destination_id = destination;
    END IF;

    -- 2. Candidate queues, locked; or, when other claims hold them all, shared.
    SELECT array_agg(c.id ORDER BY c.vtime, c.head, c.id),
           array_agg(c.vtime ORDER BY c.vtime, c.head, c.id),  -- at most 1 s behind: bounded credit
           -- a queue that joined since the last refresh counts with the smallest known portion
           array_agg(coalesce(c.portion, c.smallest, state.rate) ORDER BY c.vtime, c.head, c.id)
    INTO queue_ids, queue_vtimes, queue_portions
    FROM (
        SELECT q.id, greatest(q.vtime, destination_vtime - 1.0) AS vtime, q.portion,
               min(q.portion) OVER () AS smallest, q.head
        FROM (
            -- queues whose head can go now (one probe of the ready index finds it): a queue waiting out a
            -- retry delay or a sender cap is passed over (its virtual time stays behind, bounded to one
            -- second of credit when it comes back)
            SELECT q.id, q.vtime, q.portion, h.id AS head
            FROM fairlane.queues q
            CROSS JOIN LATERAL (
                SELECT m.id FROM fairlane.messages_live m
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
    IF queue_ids IS NULL THEN
        shared := true;
        SELECT array_agg(c.id ORDER BY c.vtime, c.id), array_agg(c.vtime ORDER BY c.vtime, c.id),
               array_agg(coalesce(c.portion, c.smallest, state.rate) ORDER BY c.vtime, c.id)
        INTO queue_ids, queue_vtimes, queue_portions
        FROM (
            SELECT q.id, greatest(q.vtime, destination_vtime - 1.0) AS vtime, q.portion, min(q.portion) OVER () AS smallest
            FROM (
                SELECT q.id, q.vtime, q.portion
                FROM fairlane.queues q
                WHERE q.destination_id = destination AND q.queued_count > 0
                  AND (q.not_before IS NULL OR q.not_before <= now_)
                  AND (q.portion IS NULL OR q.portion > 0)
                ORDER BY q.vtime, q.id
                LIMIT max_messages
            ) q
        ) c;
    END IF;
    n := coalesce(array_length(queue_ids, 1), 0);
    IF n = 0 THEN
        -- nothing may go now: when messages wait out a sender's rate cap or a retry delay, claim again when the
        -- cap lets the first go or after a short while; else wait for a NOTIFY
        SELECT CASE WHEN count(*) > 0 THEN least(min(q.not_before), now_ + interval '250 milliseconds') END
        INTO ready_at
        FROM fairlane.queues q WHERE q.destination_id = destination AND q.queued_count > 0;
        RETURN;
    END IF;

    -- 3. Water level: the lowest `level` with sum over queues of max(0, level - vtime) x portion = budget,
    -- the segments this claim may take (tokens expected, at most one per message asked for).
    FOR i IN 1..n LOOP
        k := i;
        sum_vr := sum_vr + queue_vtimes[i] * queue_portions[i];
        sum_r := sum_r + queue_portions[i];
        level := (least(floor(expected), max_messages) + sum_vr) / sum_r;
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
            FROM fairlane.messages_live m
            WHERE m.queue_id = a.queue_id AND m.status = 'queued'
              AND (m.available_at IS NULL OR m.available_at <= now_)
            ORDER BY m.id
            LIMIT least(max_messages, ceil(a.allowance)::integer)
            FOR UPDATE SKIP LOCKED
        ) m
        WHERE a.allowance >= 0.5
    ) p
    WHERE p.expired OR p.through - p.segments < p.allowance;
    IF picked_ids IS NULL THEN
        ready_at := now_ + interval '250 milliseconds';  -- their heads are locked by others (cancels, claims)
        RETURN;
    END IF;

    -- 4. Lock the fullest slices that cover what was picked, take the tokens, then write.
    SELECT coalesce(sum(u.segments), 0) INTO needed
    FROM unnest(picked_segments[1:max_messages], picked_expired[1:max_messages]) AS u(segments, expired)
    WHERE NOT u.expired;
    -- as many of the fullest slices as cover that by their expected tokens (a message larger than the whole
    -- bucket needs them all)
    slices_wanted := 1;
    covered := estimates[1];
    WHILE slices_wanted < state.slices AND covered < needed LOOP
        slices_wanted := slices_wanted + 1;
        covered := covered + estimates[slices_wanted];
    END LOOP;
    IF at_time IS NULL THEN
        now_ := clock_timestamp();
    END IF;
    SELECT array_agg(f.slice ORDER BY f.ord), array_agg(f.tokens ORDER BY f.ord),
           array_agg(f.at ORDER BY f.ord), array_agg(f.factor ORDER BY f.ord)
    INTO slice_ids, slice_tokens, slice_times, slice_factors
    FROM (
        SELECT l.slice, l.ord,
               -- refill up to now, never from a point before the last refill (injected clocks)
               greatest(now_, l.refilled_at) AS at,
               fairlane.slice_tokens_v1(l.tokens, l.refilled_at, l.rate_factor, slice_rate, slice_capacity, now_)
                   AS tokens,
               CASE WHEN l.throttled_at IS NULL OR now_ - l.throttled_at > interval '1 second'
                    THEN least(1, l.rate_factor + 0.1 * greatest(extract(epoch FROM now_ - l.refilled_at), 0))
                    ELSE l.rate_factor END AS factor
        FROM (
            SELECT sl.*, row_number() OVER () AS ord FROM (
                SELECT sl.slice, sl.tokens, sl.refilled_at, sl.rate_factor, sl.throttled_at
                FROM fairlane.destination_slices sl
                WHERE sl.destination_id = destination AND sl.slice < state.slices
                ORDER BY fairlane.slice_tokens_v1(sl.tokens, sl.refilled_at, sl.rate_factor, slice_rate,
                                                  slice_capacity, now_) DESC,
                         sl.slice
                LIMIT slices_wanted
                FOR NO KEY UPDATE SKIP LOCKED
            ) sl
        ) l
    ) f;
    IF slice_ids IS NOT NULL THEN
        SELECT sum(t) INTO available FROM unnest(slice_tokens) t;
    END IF;
    FOR i IN 1..array_length(picked_ids, 1) LOOP
        IF i > max_messages THEN
            take := take || false;
        ELSIF picked_expired[i] THEN
            take := take || true;
        ELSIF slice_ids IS NOT NULL AND (
              used + picked_segments[i] <= available
              -- a message larger than the bucket goes alone, when the whole bucket is full
              OR (used = 0 AND picked_segments[i] > state.capacity AND available >= state.capacity)) THEN
            take := take || true;
            used := used + picked_segments[i];
        ELSE
            take := take || false;
        END IF;
    END LOOP;
    -- the tokens come out of the slices in order; the last one may go below zero
    left_over := used;
    slice_draws := '{}';
    FOR i IN 1..coalesce(array_length(slice_ids, 1), 0) LOOP
        slice_draws := slice_draws || CASE WHEN i = array_length(slice_ids, 1) THEN left_over
                                          ELSE least(greatest(slice_tokens[i], 0), left_over) END;
        left_over := left_over - slice_draws[i];
    END LOOP;
    -- the next claim: when the bucket holds `target` tokens again
    ready_at := now_ + make_interval(secs => greatest(target - (expected - used), 0) / (state.rate * factor));
    IF NOT (true = ANY (take)) THEN
        RETURN;
    END IF;
    claim := nextval('fairlane.claims_id_seq');

    -- heads whose validity passed: expired, never sent
    expired_ids := ARRAY(SELECT u.id FROM unnest(picked_ids, picked_expired, take) AS u(id, expired, take)
                         WHERE u.take AND u.expired ORDER BY u.id);
    IF cardinality(expired_ids) > 0 THEN
        PERFORM FROM fairlane.finish_v1(
            expired_ids, array_fill('expired'::text, ARRAY[cardinality(expired_ids)]),
            array_fill(NULL::text, ARRAY[cardinality(expired_ids)]),
            array_fill(NULL::text, ARRAY[cardinality(expired_ids)]),
            array_fill(NULL::text, ARRAY[cardinality(expired_ids)]), array_fill(0, ARRAY[cardinality(expired_ids)]),
            array_fill(NULL::jsonb, ARRAY[cardinality(expired_ids)]), ARRAY['queued'], NULL, now_);
    END IF;
    -- the others: leased to this claim
    WITH updated AS (
        UPDATE fairlane.messages_live m
        SET status = 'sending', claim_id = claim, lease_until = now_ + make_interval(secs => lease_seconds),
            updated_at = now_, event_count = m.event_count + 1
        FROM unnest(picked_ids, picked_expired, take) AS u(id, expired, take)
        WHERE u.take AND NOT u.expired AND m.id = u.id
        RETURNING m.*
    )
    SELECT array_agg(u ORDER BY u.id) INTO leased FROM updated u;
    PERFORM fairlane.record_events_v1(ARRAY(
        SELECT ROW(l.id, l.tenant_id, 'sending', now_, jsonb_build_object('claim', claim), NULL, l.event_count,
                   l.status_callback, l.recipient, l.queue_id, l.segments)::fairlane.new_event_v1
        FROM unnest(leased) l));
    messages := ARRAY(
        SELECT ROW(l.id, claim, t.name, d.code, s.address, l.recipient, l.body, l.segments, l.expires_at,
                   l.attempts)::fairlane.claimed_message_v1
        FROM unnest(leased) l
        JOIN fairlane.queues q ON q.id = l.queue_id
        JOIN fairlane.tenants t ON t.id = l.tenant_id
        JOIN fairlane.senders s ON s.id = q.sender_id
        JOIN fairlane.destinations d ON d.id = q.destination_id
        ORDER BY l.id);

    IF shared THEN
        -- other claims hold these rows: wait for them in id order (as every writer of queue rows does)
        PERFORM FROM fairlane.queues q WHERE q.id = ANY (picked_queues) ORDER BY q.id FOR NO KEY UPDATE;
    END IF;
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
        vtime = greatest(q.vtime, destination_vtime - 1.0) + s.sent_segments / u.portion,
        not_before = CASE WHEN sd.rate_cap IS NULL THEN NULL
                          ELSE greatest(coalesce(q.not_before, now_), now_)
                               + make_interval(secs => s.sent_segments / sd.rate_cap) END,
        recent_rate = fairlane.decayed_rate_v1(q.recent_rate, q.rate_at, now_)
                      + s.sent_segments / 10.0,
        rate_at = now_
    FROM served s, fairlane.senders sd, unnest(queue_ids, queue_portions) AS u(id, portion)
    WHERE q.id = s.queue_id AND sd.id = q.sender_id AND u.id = q.id;

    UPDATE fairlane.destination_slices sl
    SET tokens = u.tokens - u.draw,
        refilled_at = u.at,
        rate_factor = u.factor,
        virtual_time = greatest(sl.virtual_time, (
            SELECT max(v.vtime) FROM unnest(queue_ids, queue_vtimes) AS v(id, vtime)
            WHERE v.id = ANY (picked_queues))),
        recent_rate = fairlane.decayed_rate_v1(sl.recent_rate, sl.rate_at, u.at) + u.draw / 10.0,
        rate_at = u.at
    FROM unnest(slice_ids, slice_tokens, slice_times, slice_factors, slice_draws) AS u(slice, tokens, at, factor, draw)
    WHERE sl.destination_id = destination AND sl.slice = u.slice;
END
$$;
