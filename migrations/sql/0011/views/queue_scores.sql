-- Why a tenant waits (SPEC §2): per active queue its portion, recent rate, score and rank, as the claim
-- (claim_v4) sees them. score = the destination's virtual time - the queue's virtual time, in seconds of the
-- queue's portion, the queue's counted at most one second behind (bounded credit): it falls as the queue is
-- served and rises while others are. The destination's virtual time is the highest of the bucket slices it
-- uses (docs/decisions/0011). Rank 1 is what the next claim for the destination takes first: eligible queues
-- first (the claim passes over a queue whose messages wait out a retry delay, a sender's rate cap or a spent
-- quota window, or whose portion is 0, and every queue while the destination's quota window is spent:
-- `waiting_for` says which), then the lowest virtual time, clamped like the score (ties: the lower unclamped
-- virtual time, then the lower queue id). `level` is the level of service of the queue's next message; the
-- binding limit is what the queue can least exceed now (docs/decisions/0020): the destination's or its
-- sender's quota window with the least left, or the per-second bucket ('rate', its tokens) when that holds
-- less, with what is left and when the window frees.
CREATE OR REPLACE VIEW fairlane.queue_scores AS
SELECT d.code AS destination,
       ts.name AS tenant_set,
       t.name AS tenant,
       s.address AS sender,
       q.id AS queue_id,
       q.queued_count AS depth,
       round(extract(epoch FROM now() - oldest.created_at)::numeric, 3) AS oldest_age_seconds,
       round(q.portion::numeric, 3) AS portion,
       round(fairlane.decayed_rate_v1(q.recent_rate, q.rate_at, now())::numeric, 3) AS recent_rate,
       round((st.virtual_time - greatest(q.vtime, st.virtual_time - 1.0))::numeric, 6) AS score,
       e.waiting_for IS NULL AS eligible,
       rank() OVER (
           PARTITION BY q.destination_id
           ORDER BY e.waiting_for IS NULL DESC, greatest(q.vtime, st.virtual_time - 1.0), q.vtime, q.id
       ) AS rank,
       CASE ready.priority WHEN 0 THEN 'high' WHEN 1 THEN 'normal' WHEN 2 THEN 'bulk' END AS level,
       e.waiting_for,
       CASE WHEN lim.binds THEN lim.binding ELSE 'rate' END AS binding_limit,
       CASE WHEN lim.binds THEN lim.remaining ELSE floor(greatest(st.tokens, 0))::bigint END AS limit_remaining,
       CASE WHEN lim.binds THEN lim.resets_at END AS limit_resets_at
FROM fairlane.queues q
JOIN fairlane.destinations d ON d.id = q.destination_id
CROSS JOIN LATERAL (
    -- the slices the claim uses (slice_count_v1): their virtual time and tokens
    SELECT max(sl.virtual_time) AS virtual_time,
           sum(fairlane.slice_tokens_v1(sl.tokens, sl.refilled_at, sl.rate_factor, c.rate / c.slices,
                                        c.capacity / c.slices, now())) AS tokens
    FROM (
        SELECT d.rate::double precision AS rate, fairlane.slice_count_v1(d.rate, d.burst) AS slices,
               greatest(d.burst - ceil(d.rate * fairlane.send_slot_v1(d.rate, d.burst)), 1)::double precision
                   AS capacity
    ) c
    JOIN fairlane.destination_slices sl ON sl.destination_id = q.destination_id AND sl.slice < c.slices
) st
JOIN fairlane.tenants t ON t.id = q.tenant_id
JOIN fairlane.tenant_sets ts ON ts.id = t.tenant_set_id
JOIN fairlane.senders s ON s.id = q.sender_id
LEFT JOIN LATERAL (
    -- the oldest queued message, whatever its level
    SELECT m.created_at
    FROM (VALUES (0), (1), (2)) AS lv(priority)
    CROSS JOIN LATERAL (
        SELECT m.id, m.created_at FROM fairlane.messages_live m
        WHERE m.queue_id = q.id AND m.status = 'queued' AND m.priority = lv.priority
        ORDER BY m.priority, m.id
        LIMIT 1
    ) m
    ORDER BY m.id
    LIMIT 1
) oldest ON true
LEFT JOIN LATERAL (
    -- the next message that may go now (the claim's probe)
    SELECT m.priority FROM fairlane.messages_live m
    WHERE m.queue_id = q.id AND m.status = 'queued' AND (m.available_at IS NULL OR m.available_at <= now())
    ORDER BY m.priority, m.id
    LIMIT 1
) ready ON true
LEFT JOIN LATERAL (
    -- the quota window with the least left; it binds when spent or when it holds no more than the bucket
    SELECT CASE WHEN w.destination_id IS NOT NULL THEN 'destination' ELSE 'sender' END || ' per_' || w.period
               AS binding,
           ws.remaining, ws.resets_at, ws.remaining < 1 OR ws.remaining <= floor(st.tokens) AS binds
    FROM fairlane.quota_windows w
    CROSS JOIN LATERAL fairlane.window_state_v1(w.period, w.quota, w.reset_timezone, w.sliding, w.counts,
                                                w.counted_at, w.closed_until, now()) ws
    WHERE w.destination_id = q.destination_id OR w.sender_id = q.sender_id
    ORDER BY ws.remaining, ws.resets_at, w.id
    LIMIT 1
) lim ON true
CROSS JOIN LATERAL (
    SELECT CASE
               WHEN lim.remaining < 1 THEN lim.binding || ' quota spent'
               WHEN q.not_before > now() THEN 'sender rate cap'
               WHEN q.portion <= 0 THEN 'no portion'
               WHEN ready.priority IS NULL THEN 'retry delay'
           END AS waiting_for
) e
WHERE q.queued_count > 0;
