-- Dispatch (SPEC §2-§4). Scoring is start-time fair queueing over the destination's active queues: each
-- queue carries a virtual time `vtime` (seconds) that advances by segments / portion whenever it is served;
-- the claim serves the lowest virtual times first, so backlogged queues receive segments in proportion to
-- their portions. The destination's virtual time is the highest its bucket slices have served; a queue that
-- (re)activates starts there, so an idle queue banks no credit (queue_membership_v2), and a queue that was
-- passed over counts at most one second behind it (bounded credit).
-- The destination's token bucket is split into slices (docs/decisions/0011, slice_count_v1), so concurrent
-- claimers of one destination lock different rows instead of queueing on one; and a claimer that finds
-- every eligible queue locked by other claims shares them instead of coming back empty.
-- Quota windows and levels of service (docs/decisions/0020): beside the bucket, a destination and a sender may
-- carry per-minute, per-hour and per-day quotas (quota_windows); a claim never takes a segment any of them
-- would refuse, and a spent window stops claims (its destination's, or its sender's queues) until it frees.
-- Inside a queue, messages go by level (high, normal, bulk), then oldest first, except that each lower level
-- with messages waiting keeps settings.level_minimum_share of the queue's service (queues.normal_owed,
-- bulk_owed); across queues nothing changes.
-- Like the other dispatch functions, it takes `at_time` (default clock_timestamp()) so tests can drive time.
--
-- Claim up to max_messages ready messages of one destination, never more segments than its token bucket
-- holds (refilled at rate x AIMD factor; capacity the burst less the send slot's worth of the rate,
-- send_slot_v1, at least 1) or its quota windows have left; a message that may not go now is never claimed.
--   1. the destination's quota windows: spent, claim again when the first binding one frees; estimate the
--      tokens of the destination's slices without locking them; refresh stale portions (a sender's spent
--      window takes its queues out of the shares until it frees: refresh_portions_v2);
--   2. lock up to max_messages eligible active queues (a ready message, no rate-cap or retry wait, a portion,
--      no spent sender window) with the lowest virtual time, clamped to one second behind the destination's
--      (ties: the lower unclamped virtual time, then the lower queue id: fairlane.queue_scores ranks them
--      alike), SKIP LOCKED so concurrent claimers take other queues; when other claims hold every eligible
--      queue, take the first ones unlocked and share them (their messages are still locked one by one, and
--      their rows are written last, in id order, after the other claims);
--   3. share the tokens (at most one per message asked for, at most what the destination's windows have left)
--      among them by raising their virtual times to a common level (fluid fair queueing: queue i gets (level -
--      vtime_i) x portion_i segments), and lock that many ready messages of each through the ready index (FOR
--      UPDATE SKIP LOCKED, LIMIT fenced): what a lower level is owed first, then by level, oldest first;
--   4. lock as many slices as those messages need, the fullest first, SKIP LOCKED (concurrent claimers take
--      other slices), then the quota windows they count against (the destination's and their senders', in id
--      order); take the tokens for what fits the bucket (a message may start while a token is left, so the
--      tokens can go below zero by less than one message) and every window (exactly: a window never goes
--      over), lease those messages, expire the dead ones, advance the queues' virtual times, counters, rates
--      and owed shares, the slices' and the windows'. A window that refused a message closes until it frees
--      (the destination's only when nothing else fitted), and a sender's spent window moves fairlane.shares_seq
--      on, so the portions are computed again without its queues.
--   5. say when the next claim should come (`ready_at`): when the bucket will hold `target` tokens again
--      (50 ms of the rate, at most the batch and half the bucket's capacity — a full bucket wastes its refill —,
--      at least one segment), or when the destination's spent window frees, so a claimer of a rate-limited
--      destination waits for its tokens instead of polling for them; NULL when nothing is waiting to go (an
--      idle claimer waits for a NOTIFY on fairlane_ready).
-- Returns the leased messages and ready_at.
CREATE OR REPLACE FUNCTION fairlane.claim_v4(
    destination bigint, max_messages integer, lease_seconds double precision, at_time timestamptz DEFAULT NULL,
    OUT messages fairlane.claimed_message_v1[], OUT ready_at timestamptz
)
LANGUAGE plpgsql AS $$
DECLARE
    now_ timestamptz := coalesce(at_time, clock_timestamp());
    state record;
    refreshed record;
    factor double precision;  -- the AIMD factor in use (the highest of the slices')
    target double precision;  -- tokens worth a claim
    slice_rate double precision;
    slice_capacity double precision;
    estimates double precision[];  -- each slice's expected tokens, most first
    expected double precision;
    destination_vtime double precision;
    minimum_share double precision;  -- of a queue's service, for each lower level with messages waiting
    dest_left double precision;  -- what the destination's quota windows have left (NULL: it has none)
    dest_resets timestamptz;  -- when the binding one frees
    sender_windows boolean;  -- whether any sender has a quota window
    shared boolean := false;
    queue_ids bigint[];
    queue_vtimes double precision[];
    queue_portions double precision[];
    queue_senders bigint[];
    queue_normal_owed double precision[];
    queue_bulk_owed double precision[];
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
    picked_levels smallint[];
    picked_senders bigint[];
    picked_owed boolean[];  -- taken first, as what its lower level is owed
    picked_normal smallint[];  -- of each message's queue's normal level: 1 seen, 2 looked for and none, 0 unknown
    picked_bulk smallint[];  -- the same of its bulk level
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
    window_ids bigint[];
    window_senders bigint[];  -- NULL: a window of the destination
    window_left double precision[];
    window_resets timestamptz[];
    sender_list bigint[];  -- the picked messages' senders that have quota windows
    sender_left double precision[];
    sender_used double precision[];
    sender_refused integer[];  -- the fewest segments a sender's windows refused
    dest_refused integer;  -- the fewest segments the destination's windows refused
    queues_locked boolean := false;
    shares_moved bigint;
    j integer;
    claim bigint;
    expired_ids bigint[];
    leased fairlane.messages_live[];
BEGIN
    messages := '{}';
    -- 1. The destination's quota windows, then the expected tokens (the real takes are in step 4, under locks).
    SELECT min(ws.remaining), (array_agg(ws.resets_at ORDER BY ws.remaining, ws.resets_at))[1]
    INTO dest_left, dest_resets
    FROM fairlane.quota_windows w
    CROSS JOIN LATERAL fairlane.window_state_v1(w.period, w.quota, w.reset_timezone, w.sliding, w.counts,
                                                w.counted_at, w.closed_until, now_) ws
    WHERE w.destination_id = destination;
    IF dest_left < 1 THEN
        ready_at := dest_resets;
        RETURN;
    END IF;
    SELECT d.rate::double precision AS rate,
           -- the bucket holds the burst less the send slot's worth of the rate: the allowance for the time
           -- between a claim and the message's arrival at the carrier, so arrivals stay within rate + burst
           -- per second too
           greatest(d.burst - ceil(d.rate * fairlane.send_slot_v1(d.rate, d.burst)), 1)::double precision
               AS capacity,
           fairlane.slice_count_v1(d.rate, d.burst) AS slices,
           s.portions_version, s.portions_at, s.portions_until,
           (SELECT sq.last_value FROM fairlane.shares_seq sq) AS shares_version,
           (SELECT st.level_minimum_share::double precision FROM fairlane.settings st) AS minimum_share,
           EXISTS (SELECT FROM fairlane.quota_windows w WHERE w.sender_id IS NOT NULL) AS sender_windows
    INTO state
    FROM fairlane.destination_state s JOIN fairlane.destinations d ON d.id = s.destination_id
    WHERE s.destination_id = destination;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    minimum_share := coalesce(state.minimum_share, 0);
    sender_windows := state.sender_windows;
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
    -- Portions follow membership and configuration changes and spent sender windows, recomputed at most every
    -- 100 ms (with a thousand small tenants joining and leaving, every claim would otherwise rewrite every queue).
    IF (state.shares_version > state.portions_version OR now_ >= state.portions_until)
       AND (state.portions_at IS NULL OR now_ - state.portions_at >= interval '100 milliseconds')
       -- one claimer recomputes at a time; the others go on with the portions they have
       AND pg_try_advisory_xact_lock(hashtext('fairlane.portions'), destination::integer) THEN
        SELECT * INTO refreshed FROM fairlane.refresh_portions_v2(destination, now_);
        UPDATE fairlane.destination_state s
        SET portions_version = CASE WHEN refreshed.complete
                                    THEN greatest(s.portions_version, state.shares_version)
                                    ELSE s.portions_version END,
            portions_at = greatest(s.portions_at, now_),
            portions_until = refreshed.valid_until
        WHERE s.destination_id = destination;
    END IF;

    -- 2. Candidate queues, locked; or, when other claims hold them all, shared.
    SELECT array_agg(c.id ORDER BY c.vtime, c.raw, c.id),
           array_agg(c.vtime ORDER BY c.vtime, c.raw, c.id),  -- at most 1 s behind: bounded credit
           -- a queue that joined since the last refresh counts with the smallest known portion
           array_agg(coalesce(c.portion, c.smallest, state.rate) ORDER BY c.vtime, c.raw, c.id),
           array_agg(c.sender_id ORDER BY c.vtime, c.raw, c.id),
           array_agg(c.normal_owed ORDER BY c.vtime, c.raw, c.id),
           array_agg(c.bulk_owed ORDER BY c.vtime, c.raw, c.id)
    INTO queue_ids, queue_vtimes, queue_portions, queue_senders, queue_normal_owed, queue_bulk_owed
    FROM (
        SELECT q.id, greatest(q.vtime, destination_vtime - 1.0) AS vtime, q.vtime AS raw, q.portion,
               min(q.portion) OVER () AS smallest, q.sender_id, q.normal_owed, q.bulk_owed
        FROM (
            -- queues whose head can go now (one probe of the ready index finds it): a queue waiting out a
            -- retry delay, a sender cap or a sender's spent quota window is passed over (its virtual time stays
            -- behind, bounded to one second of credit when it comes back)
            SELECT q.id, q.vtime, q.portion, q.sender_id, q.normal_owed, q.bulk_owed
            FROM fairlane.queues q
            CROSS JOIN LATERAL (
                SELECT m.id FROM fairlane.messages_live m
                WHERE m.queue_id = q.id AND m.status = 'queued'
                  AND (m.available_at IS NULL OR m.available_at <= now_)
                ORDER BY m.priority, m.id LIMIT 1
            ) h
            WHERE q.destination_id = destination AND q.queued_count > 0
              AND (q.not_before IS NULL OR q.not_before <= now_)
              AND (q.portion IS NULL OR q.portion > 0)
              AND (NOT sender_windows OR NOT EXISTS (
                  SELECT FROM fairlane.quota_windows w
                  CROSS JOIN LATERAL fairlane.window_state_v1(w.period, w.quota, w.reset_timezone, w.sliding,
                                                              w.counts, w.counted_at, w.closed_until, now_) ws
                  WHERE w.sender_id = q.sender_id AND ws.remaining < 1))
            ORDER BY q.vtime, q.id
            LIMIT max_messages
            FOR NO KEY UPDATE OF q SKIP LOCKED
        ) q
    ) c;
    IF queue_ids IS NULL THEN
        shared := true;
        SELECT array_agg(c.id ORDER BY c.vtime, c.raw, c.id), array_agg(c.vtime ORDER BY c.vtime, c.raw, c.id),
               array_agg(coalesce(c.portion, c.smallest, state.rate) ORDER BY c.vtime, c.raw, c.id),
               array_agg(c.sender_id ORDER BY c.vtime, c.raw, c.id),
               array_agg(c.normal_owed ORDER BY c.vtime, c.raw, c.id),
               array_agg(c.bulk_owed ORDER BY c.vtime, c.raw, c.id)
        INTO queue_ids, queue_vtimes, queue_portions, queue_senders, queue_normal_owed, queue_bulk_owed
        FROM (
            SELECT q.id, greatest(q.vtime, destination_vtime - 1.0) AS vtime, q.vtime AS raw, q.portion,
                   min(q.portion) OVER () AS smallest, q.sender_id, q.normal_owed, q.bulk_owed
            FROM (
                SELECT q.id, q.vtime, q.portion, q.sender_id, q.normal_owed, q.bulk_owed
                FROM fairlane.queues q
                WHERE q.destination_id = destination AND q.queued_count > 0
                  AND (q.not_before IS NULL OR q.not_before <= now_)
                  AND (q.portion IS NULL OR q.portion > 0)
                  AND (NOT sender_windows OR NOT EXISTS (
                      SELECT FROM fairlane.quota_windows w
                      CROSS JOIN LATERAL fairlane.window_state_v1(w.period, w.quota, w.reset_timezone, w.sliding,
                                                                  w.counts, w.counted_at, w.closed_until, now_) ws
                      WHERE w.sender_id = q.sender_id AND ws.remaining < 1))
                ORDER BY q.vtime, q.id
                LIMIT max_messages
            ) q
        ) c;
    END IF;
    n := coalesce(array_length(queue_ids, 1), 0);
    IF n = 0 THEN
        -- nothing may go now: when messages wait out a sender's spent quota window, claim again when it frees;
        -- when they wait out a sender's rate cap or a retry delay, when the cap lets the first go or after a
        -- short while; else wait for a NOTIFY
        SELECT min(coalesce(sw.frees_at, least(q.not_before, now_ + interval '250 milliseconds')))
        INTO ready_at
        FROM fairlane.queues q
        LEFT JOIN LATERAL (
            SELECT max(ws.resets_at) AS frees_at
            FROM fairlane.quota_windows w
            CROSS JOIN LATERAL fairlane.window_state_v1(w.period, w.quota, w.reset_timezone, w.sliding, w.counts,
                                                        w.counted_at, w.closed_until, now_) ws
            WHERE sender_windows AND w.sender_id = q.sender_id AND ws.remaining < 1
        ) sw ON true
        WHERE q.destination_id = destination AND q.queued_count > 0;
        RETURN;
    END IF;

    -- 3. Water level: the lowest `level` with sum over queues of max(0, level - vtime) x portion = budget,
    -- the segments this claim may take (tokens expected, at most one per message asked for and what the
    -- destination's quota windows have left).
    FOR i IN 1..n LOOP
        k := i;
        sum_vr := sum_vr + queue_vtimes[i] * queue_portions[i];
        sum_r := sum_r + queue_portions[i];
        level := (least(floor(expected), max_messages, floor(coalesce(dest_left, 'Infinity'))) + sum_vr) / sum_r;
        EXIT WHEN i = n OR level <= queue_vtimes[i + 1];
    END LOOP;
    allowances := ARRAY(
        SELECT greatest((level - u.vtime) * u.portion, CASE WHEN u.ord = 1 THEN 1 ELSE 0 END)
        FROM unnest(queue_vtimes[1:k], queue_portions[1:k]) WITH ORDINALITY AS u(vtime, portion, ord)
        ORDER BY u.ord
    );
    -- each queue's ready messages up to its allowance (a message may start while allowance is left), in one
    -- statement: index probes per queue through the ready index, LIMIT fenced inside the LATERAL. The first
    -- probe takes them by level, oldest first; a lower level owed at least a segment (what it was owed, plus
    -- its minimum share of this allowance) gets a probe of its own, and its messages within what it is owed go
    -- first.
    SELECT array_agg(p.id ORDER BY p.ord, p.rank), array_agg(p.queue_id ORDER BY p.ord, p.rank),
           array_agg(p.segments ORDER BY p.ord, p.rank), array_agg(p.expired ORDER BY p.ord, p.rank),
           array_agg(p.priority ORDER BY p.ord, p.rank), array_agg(p.sender_id ORDER BY p.ord, p.rank),
           array_agg(p.owed ORDER BY p.ord, p.rank), array_agg(p.normal ORDER BY p.ord, p.rank),
           array_agg(p.bulk ORDER BY p.ord, p.rank)
    INTO picked_ids, picked_queues, picked_segments, picked_expired, picked_levels, picked_senders,
         picked_owed, picked_normal, picked_bulk
    FROM (
        SELECT r.*,
               coalesce(sum(r.segments) FILTER (WHERE NOT r.expired)
                        OVER (PARTITION BY r.queue_id ORDER BY r.rank), 0) AS through
        FROM (
            SELECT u.*, row_number() OVER (PARTITION BY u.queue_id ORDER BY NOT u.owed, u.priority, u.id) AS rank,
                   CASE WHEN bool_or(u.priority = 1) OVER (PARTITION BY u.queue_id) THEN 1
                        WHEN u.normal_due >= 1 THEN 2 ELSE 0 END::smallint AS normal,
                   CASE WHEN bool_or(u.priority = 2) OVER (PARTITION BY u.queue_id) THEN 1
                        WHEN u.bulk_due >= 1 THEN 2 ELSE 0 END::smallint AS bulk
            FROM (
                -- each message once (found by two probes: as owed)
                SELECT DISTINCT ON (o.id) o.*
                FROM (
                    SELECT f.*,
                           f.probe > 0 AND f.priority = f.probe
                           AND sum(f.segments) OVER (PARTITION BY f.queue_id, f.probe, f.priority ORDER BY f.id)
                               - f.segments
                               < CASE f.probe WHEN 1 THEN f.normal_due ELSE f.bulk_due END AS owed
                    FROM (
                        SELECT a.ord, a.queue_id, a.allowance, a.sender_id, a.normal_due, a.bulk_due, pr.probe,
                               m.id, m.segments, m.expired, m.priority
                        FROM (
                            SELECT a.*, a.normal_owed + minimum_share * a.allowance AS normal_due,
                                   a.bulk_owed + minimum_share * a.allowance AS bulk_due
                            FROM unnest(queue_ids[1:k], allowances, queue_senders[1:k], queue_normal_owed[1:k],
                                        queue_bulk_owed[1:k])
                                WITH ORDINALITY AS a(queue_id, allowance, sender_id, normal_owed, bulk_owed, ord)
                            WHERE a.allowance >= 0.5
                        ) a
                        CROSS JOIN LATERAL (
                            -- probe 0: every level; 1 and 2: that level alone
                            VALUES (0, 2, least(max_messages, ceil(a.allowance)::integer)),
                                   (1, 1, CASE WHEN a.normal_due >= 1
                                               THEN least(max_messages, ceil(a.normal_due)::integer) ELSE 0 END),
                                   (2, 2, CASE WHEN a.bulk_due >= 1
                                               THEN least(max_messages, ceil(a.bulk_due)::integer) ELSE 0 END)
                        ) pr(probe, last, wanted)
                        CROSS JOIN LATERAL (
                            SELECT m.id, m.segments, m.expires_at <= now_ AS expired, m.priority
                            FROM fairlane.messages_live m
                            WHERE m.queue_id = a.queue_id AND m.status = 'queued'
                              AND m.priority BETWEEN pr.probe AND pr.last
                              AND (m.available_at IS NULL OR m.available_at <= now_)
                            ORDER BY m.priority, m.id
                            LIMIT pr.wanted
                            FOR UPDATE SKIP LOCKED
                        ) m
                    ) f
                ) o
                ORDER BY o.id, o.owed DESC
            ) u
        ) r
    ) p
    WHERE p.expired OR p.through - p.segments < p.allowance;
    IF picked_ids IS NULL THEN
        ready_at := now_ + interval '250 milliseconds';  -- their heads are locked by others (cancels, claims)
        RETURN;
    END IF;

    -- 4. Lock the fullest slices that cover what was picked, then the quota windows, take the tokens and the
    -- windows' room, then write.
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
    -- The quota windows the messages count against, locked in id order (every claim takes them in that order,
    -- after its slices, which it never waits for). A claim sharing queues first waits for the claims holding
    -- them, so it never holds a window they wait for.
    IF slice_ids IS NOT NULL AND (dest_left IS NOT NULL OR sender_windows) THEN
        IF shared THEN
            PERFORM FROM fairlane.queues q WHERE q.id = ANY (picked_queues) ORDER BY q.id FOR NO KEY UPDATE;
            queues_locked := true;
        END IF;
        SELECT array_agg(w.id ORDER BY w.id), array_agg(w.sender_id ORDER BY w.id),
               array_agg(ws.remaining::double precision ORDER BY w.id), array_agg(ws.resets_at ORDER BY w.id)
        INTO window_ids, window_senders, window_left, window_resets
        FROM (
            SELECT w.* FROM fairlane.quota_windows w
            WHERE w.destination_id = destination OR w.sender_id = ANY (picked_senders)
            ORDER BY w.id
            FOR NO KEY UPDATE
        ) w
        CROSS JOIN LATERAL fairlane.window_state_v1(w.period, w.quota, w.reset_timezone, w.sliding, w.counts,
                                                    w.counted_at, w.closed_until, now_) ws;
        SELECT min(u.left_) INTO dest_left
        FROM unnest(window_left, window_senders) AS u(left_, sender) WHERE u.sender IS NULL;
        SELECT array_agg(u.sender ORDER BY u.sender), array_agg(u.left_ ORDER BY u.sender)
        INTO sender_list, sender_left
        FROM (SELECT u.sender, min(u.left_) AS left_ FROM unnest(window_left, window_senders) AS u(left_, sender)
              WHERE u.sender IS NOT NULL GROUP BY u.sender) u;
        sender_used := array_fill(0::double precision, ARRAY[coalesce(cardinality(sender_list), 0)]);
        sender_refused := array_fill(NULL::integer, ARRAY[coalesce(cardinality(sender_list), 0)]);
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
            -- and every quota window it counts against holds it
            j := array_position(sender_list, picked_senders[i]);
            IF used + picked_segments[i] > dest_left THEN
                take := take || false;
                dest_refused := least(dest_refused, picked_segments[i]);
            ELSIF sender_refused[j] IS NOT NULL OR sender_used[j] + picked_segments[i] > sender_left[j] THEN
                -- a sender's messages go in order: once one does not fit, the rest of its queue waits too
                take := take || false;
                sender_refused[j] := least(sender_refused[j], picked_segments[i]);
            ELSE
                take := take || true;
                used := used + picked_segments[i];
                IF j IS NOT NULL THEN
                    sender_used[j] := sender_used[j] + picked_segments[i];
                END IF;
            END IF;
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
    -- the next claim: when the bucket holds `target` tokens again, or when the destination's spent (or, having
    -- taken nothing, refusing) quota window frees
    ready_at := now_ + make_interval(secs => greatest(target - (expected - used), 0) / (state.rate * factor));
    IF window_ids IS NOT NULL THEN
        SELECT greatest(ready_at, max(u.resets)) INTO ready_at
        FROM unnest(window_left, window_senders, window_resets) AS u(left_, sender, resets)
        WHERE u.sender IS NULL AND (u.left_ - used < 1 OR (used = 0 AND u.left_ < dest_refused));
        -- the windows' use; a window that refused a message closes until it frees (the destination's only when
        -- nothing fitted); a sender's spent window changes the shares
        WITH changes AS (
            SELECT u.id, u.resets,
                   CASE WHEN u.sender IS NULL THEN used ELSE coalesce(sender_used[p.pos], 0) END AS added,
                   CASE WHEN u.sender IS NULL THEN used = 0 AND u.left_ < dest_refused
                        ELSE u.left_ - coalesce(sender_used[p.pos], 0) < sender_refused[p.pos] END AS closes,
                   u.sender IS NOT NULL
                       AND (u.left_ - coalesce(sender_used[p.pos], 0) < 1
                            OR u.left_ - coalesce(sender_used[p.pos], 0) < sender_refused[p.pos]) AS spent
            FROM unnest(window_ids, window_senders, window_left, window_resets) AS u(id, sender, left_, resets)
            CROSS JOIN LATERAL (SELECT array_position(sender_list, u.sender) AS pos) p
        ),
        written AS (
            UPDATE fairlane.quota_windows w
            SET (counts, counted_at) = (
                    SELECT c.new_counts, c.new_counted_at
                    FROM fairlane.window_counts_v1(w.period, w.reset_timezone, w.sliding, w.counts, w.counted_at,
                                                   now_, c.added::bigint) c),
                closed_until = CASE WHEN c.closes THEN c.resets ELSE w.closed_until END
            FROM changes c
            WHERE w.id = c.id AND (c.added > 0 OR c.closes)
            RETURNING w.id
        )
        SELECT CASE WHEN bool_or(c.spent) THEN nextval('fairlane.shares_seq') END INTO shares_moved
        FROM changes c;
    END IF;
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

    IF shared AND NOT queues_locked THEN
        -- other claims hold these rows: wait for them in id order (as every writer of queue rows does)
        PERFORM FROM fairlane.queues q WHERE q.id = ANY (picked_queues) ORDER BY q.id FOR NO KEY UPDATE;
    END IF;
    WITH served AS (
        SELECT u.queue_id,
               count(*) FILTER (WHERE u.take) AS messages,
               coalesce(sum(u.segments) FILTER (WHERE u.take), 0) AS segments,
               coalesce(sum(u.segments) FILTER (WHERE u.take AND NOT u.expired), 0) AS sent_segments,
               -- what each lower level got as owed, and whether it went in the order of levels (it was the
               -- highest waiting: nothing is owed to it)
               coalesce(sum(u.segments) FILTER (WHERE u.take AND NOT u.expired AND u.priority = 1 AND u.owed), 0)
                   AS normal_owed_sent,
               coalesce(sum(u.segments) FILTER (WHERE u.take AND NOT u.expired AND u.priority = 2 AND u.owed), 0)
                   AS bulk_owed_sent,
               coalesce(bool_or(u.take AND NOT u.expired AND u.priority = 1 AND NOT u.owed), false) AS normal_first,
               coalesce(bool_or(u.take AND NOT u.expired AND u.priority = 2 AND NOT u.owed), false) AS bulk_first,
               max(u.normal) AS normal, max(u.bulk) AS bulk
        FROM unnest(picked_queues, picked_segments, picked_expired, take, picked_levels, picked_owed, picked_normal,
                    picked_bulk)
            AS u(queue_id, segments, expired, take, priority, owed, normal, bulk)
        GROUP BY u.queue_id
        HAVING bool_or(u.take)
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
        rate_at = now_,
        -- a lower level is owed its minimum share of what the queue sent, less what it got as owed (a message
        -- that started while a little was owed leaves a debt of less than itself); nothing when it went in the
        -- order of levels or was looked for and had no message ready
        normal_owed = CASE WHEN s.normal_first OR s.normal = 2 THEN 0
                           ELSE q.normal_owed + minimum_share * s.sent_segments - s.normal_owed_sent END,
        bulk_owed = CASE WHEN s.bulk_first OR s.bulk = 2 THEN 0
                         ELSE q.bulk_owed + minimum_share * s.sent_segments - s.bulk_owed_sent END
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
