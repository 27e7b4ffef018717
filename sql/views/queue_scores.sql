-- Why a tenant waits (SPEC §2): per active queue its portion, recent rate, score and rank, as the claim
-- sees them. score = the destination's virtual time - the queue's virtual time, in seconds of the queue's
-- portion: it falls as the queue is served and rises while others are. Rank 1 is what the next claim for
-- the destination takes first (eligible queues first: a sender over its rate cap waits; then the highest
-- score, the oldest head message, the lowest queue id). The destination's virtual time is the highest of
-- its bucket slices' (docs/decisions/0011).
CREATE OR REPLACE VIEW fairlane.queue_scores AS
SELECT d.code AS destination,
       ts.name AS tenant_set,
       t.name AS tenant,
       s.address AS sender,
       q.id AS queue_id,
       q.queued_count AS depth,
       round(extract(epoch FROM now() - head.created_at)::numeric, 3) AS oldest_age_seconds,
       round(q.portion::numeric, 3) AS portion,
       round(fairlane.decayed_rate_v1(q.recent_rate, q.rate_at, now())::numeric, 3) AS recent_rate,
       round((st.virtual_time - q.vtime)::numeric, 6) AS score,
       q.not_before IS NULL OR q.not_before <= now() AS eligible,
       rank() OVER (
           PARTITION BY q.destination_id
           ORDER BY (q.not_before IS NULL OR q.not_before <= now()) DESC, q.vtime, head.id, q.id
       ) AS rank
FROM fairlane.queues q
JOIN fairlane.destinations d ON d.id = q.destination_id
CROSS JOIN LATERAL (
    SELECT max(sl.virtual_time) AS virtual_time FROM fairlane.destination_slices sl
    WHERE sl.destination_id = q.destination_id
) st
JOIN fairlane.tenants t ON t.id = q.tenant_id
JOIN fairlane.tenant_sets ts ON ts.id = t.tenant_set_id
JOIN fairlane.senders s ON s.id = q.sender_id
LEFT JOIN LATERAL (
    SELECT m.id, m.created_at FROM fairlane.messages_live m
    WHERE m.queue_id = q.id AND m.status = 'queued'
    ORDER BY m.id
    LIMIT 1
) head ON true
WHERE q.queued_count > 0;
