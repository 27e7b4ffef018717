-- Fair portions (SPEC §2) of the active queues of some destinations, in segments per second: the closed-form
-- split admission uses, and compute_portions_v2's fast path when no sender cap binds.
-- Active: holding queued messages, or named in `joining` (queues about to receive messages), and not named in
-- `leaving` (queues whose sender's quota window is spent: compute_portions_v2).
--   set portion    R_s = R * w_s / sum(w of active weighted sets), after absolute set rates are taken out
--                  (absolute sets alone on a destination share all of R in proportion to their rates);
--   tenant portion R_t = R_s * w_t / sum(w of the set's active tenants);
--   queue portion  r_q = R_t / (the tenant's number of active senders), at most the sender's rate cap.
-- Capacity a capped sender cannot use is not redistributed here (admission stays conservative); `capped`
-- says a queue's cap bound.
-- PL/pgSQL, so that its plan is made once per session instead of on every call (a SQL function that cannot
-- be inlined is planned each time it runs: 1.8 ms of a 5 ms submission).
CREATE OR REPLACE FUNCTION fairlane.queue_portions_v3(destination_ids bigint[], joining bigint[], leaving bigint[])
RETURNS TABLE (queue_id bigint, portion double precision, capped boolean)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH active AS (
        SELECT q.id, q.destination_id, q.tenant_id, t.tenant_set_id, t.weight AS tenant_weight, s.rate_cap,
               CASE WHEN a.rate IS NULL THEN coalesce(a.weight, ts.weight) END AS set_weight,
               a.rate AS set_rate
        FROM fairlane.queues q
        JOIN fairlane.tenants t ON t.id = q.tenant_id
        JOIN fairlane.tenant_sets ts ON ts.id = t.tenant_set_id
        JOIN fairlane.senders s ON s.id = q.sender_id
        LEFT JOIN fairlane.allocations a
            ON a.destination_id = q.destination_id AND a.tenant_set_id = t.tenant_set_id
        WHERE q.destination_id = ANY (destination_ids)
          AND (q.queued_count > 0 OR q.id = ANY (joining))
          AND q.id <> ALL (leaving)
    ),
    sets AS (
        SELECT DISTINCT destination_id, tenant_set_id, set_weight, set_rate FROM active
    ),
    set_totals AS (
        SELECT destination_id, coalesce(sum(set_rate), 0) AS absolute_rate, coalesce(sum(set_weight), 0) AS weight
        FROM sets GROUP BY destination_id
    ),
    set_shares AS (
        SELECT s.destination_id, s.tenant_set_id,
               CASE
                   WHEN s.set_rate IS NOT NULL AND st.weight > 0
                       THEN s.set_rate * least(1, d.rate / st.absolute_rate)
                   WHEN s.set_rate IS NOT NULL
                       THEN d.rate * s.set_rate / st.absolute_rate
                   ELSE greatest(d.rate - st.absolute_rate, 0) * s.set_weight / st.weight
               END AS set_portion
        FROM sets s
        JOIN set_totals st USING (destination_id)
        JOIN fairlane.destinations d ON d.id = s.destination_id
    ),
    tenants AS (
        SELECT DISTINCT destination_id, tenant_set_id, tenant_id, tenant_weight FROM active
    ),
    tenant_shares AS (
        SELECT t.destination_id, t.tenant_id,
               ss.set_portion * t.tenant_weight
                   / sum(t.tenant_weight) OVER (PARTITION BY t.destination_id, t.tenant_set_id) AS tenant_portion
        FROM tenants t
        JOIN set_shares ss USING (destination_id, tenant_set_id)
    )
    SELECT a.id,
           (CASE
               WHEN a.rate_cap IS NULL THEN share
               ELSE least(share, a.rate_cap)
           END)::double precision,
           coalesce(share >= a.rate_cap, false)
    FROM (
        SELECT a.*, ts.tenant_portion / count(*) OVER (PARTITION BY a.destination_id, a.tenant_id) AS share
        FROM active a
        JOIN tenant_shares ts USING (destination_id, tenant_id)
    ) a;
END
$$;
