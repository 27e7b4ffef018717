-- Hierarchical weighted max-min fair shares (SPEC §2): the portion of every active queue of a destination
-- (queue_portions_v3's closed form when no sender cap binds):
--   sets: absolute sets first get their rate (at most their demand cap, scaled down if together above R);
--         weighted sets share the rest by weight (allocation weight, else the set's weight); capacity left
--         over (every weighted set capped, or none active) goes to the absolute sets by their rates;
--   tenants: a set's share by tenant weight; queues: a tenant's share equally over its active senders.
-- At every level a claimant's cap is what its queues can use (the sum of sender rate caps; no cap when a
-- sender has none), and what it cannot use goes to its siblings (weighted max-min, work-conserving).
-- Queues named in `leaving` (their sender's quota window is spent: refresh_portions_v2) count as inactive, so
-- their share goes to the others: the tenant's other senders first, then the other tenants.
CREATE OR REPLACE FUNCTION fairlane.compute_portions_v2(destination bigint, leaving bigint[])
RETURNS TABLE (queue_id bigint, portion double precision)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    quota double precision;
    set_row record;
    tenant_row record;
    set_ids bigint[];
    set_weights double precision[];
    set_rates double precision[];
    set_caps double precision[];
    set_shares double precision[];
    absolute_shares double precision[];
    weighted_shares double precision[];
    leftover double precision;
    tenant_ids bigint[];
    tenant_weights double precision[];
    tenant_caps double precision[];
    tenant_shares double precision[];
    queue_ids bigint[];
    queue_caps double precision[];
    queue_shares double precision[];
    capped_any boolean;
BEGIN
    -- Fast path, one query: when no sender cap binds, max-min is the closed-form hierarchical split.
    SELECT array_agg(p.queue_id), array_agg(p.portion), coalesce(bool_or(p.capped), false)
    INTO queue_ids, queue_shares, capped_any
    FROM fairlane.queue_portions_v3(ARRAY[destination], '{}', leaving) p;
    IF NOT capped_any THEN
        RETURN QUERY SELECT * FROM unnest(queue_ids, queue_shares);
        RETURN;
    END IF;

    SELECT d.rate INTO quota FROM fairlane.destinations d WHERE d.id = destination;
    -- the active sets with their weight or absolute rate and their demand cap
    SELECT array_agg(x.tenant_set_id ORDER BY x.tenant_set_id), array_agg(x.weight ORDER BY x.tenant_set_id),
           array_agg(x.rate ORDER BY x.tenant_set_id), array_agg(x.cap ORDER BY x.tenant_set_id)
    INTO set_ids, set_weights, set_rates, set_caps
    FROM (
        SELECT t.tenant_set_id,
               CASE WHEN a.rate IS NULL THEN coalesce(a.weight, ts.weight) END::double precision AS weight,
               a.rate::double precision AS rate,
               CASE WHEN bool_and(s.rate_cap IS NOT NULL) THEN sum(s.rate_cap) END::double precision AS cap
        FROM fairlane.queues q
        JOIN fairlane.tenants t ON t.id = q.tenant_id
        JOIN fairlane.tenant_sets ts ON ts.id = t.tenant_set_id
        JOIN fairlane.senders s ON s.id = q.sender_id
        LEFT JOIN fairlane.allocations a ON a.destination_id = q.destination_id AND a.tenant_set_id = t.tenant_set_id
        WHERE q.destination_id = destination AND q.queued_count > 0 AND q.id <> ALL (leaving)
        GROUP BY t.tenant_set_id, a.rate, a.weight, ts.weight
    ) x;
    IF set_ids IS NULL THEN
        RETURN;
    END IF;

    -- absolute sets (weight NULL) first, at most their rate and cap, scaled down together to fit the quota
    absolute_shares := fairlane.water_fill_v1(
        least(quota, (SELECT coalesce(sum(r), 0) FROM unnest(set_rates) r)),
        ARRAY(SELECT coalesce(r, 0) FROM unnest(set_rates) r),
        ARRAY(SELECT CASE WHEN r IS NULL THEN 0 ELSE least(r, coalesce(c, r)) END
              FROM unnest(set_rates, set_caps) AS u(r, c)));
    leftover := quota - (SELECT coalesce(sum(x), 0) FROM unnest(absolute_shares) x);
    weighted_shares := fairlane.water_fill_v1(
        leftover, ARRAY(SELECT coalesce(w, 0) FROM unnest(set_weights) w), set_caps);
    set_shares := ARRAY(SELECT a + w FROM unnest(absolute_shares, weighted_shares) AS u(a, w));
    leftover := quota - (SELECT coalesce(sum(x), 0) FROM unnest(set_shares) x);
    IF leftover > 1e-9 THEN
        -- nothing weighted can use it: the absolute sets absorb it by their rates
        set_shares := ARRAY(
            SELECT s + e FROM unnest(set_shares, fairlane.water_fill_v1(
                leftover,
                ARRAY(SELECT coalesce(r, 0) FROM unnest(set_rates) r),
                ARRAY(SELECT CASE WHEN r IS NULL THEN 0 ELSE greatest(coalesce(c, 'Infinity') - s, 0) END
                      FROM unnest(set_rates, set_caps, set_shares) AS u(r, c, s))
            )) AS u(s, e));
    END IF;

    FOR set_row IN SELECT * FROM unnest(set_ids, set_shares) AS u(id, share) LOOP
        SELECT array_agg(x.tenant_id ORDER BY x.tenant_id), array_agg(x.weight ORDER BY x.tenant_id),
               array_agg(x.cap ORDER BY x.tenant_id)
        INTO tenant_ids, tenant_weights, tenant_caps
        FROM (
            SELECT q.tenant_id, t.weight::double precision AS weight,
                   CASE WHEN bool_and(s.rate_cap IS NOT NULL) THEN sum(s.rate_cap) END::double precision AS cap
            FROM fairlane.queues q
            JOIN fairlane.tenants t ON t.id = q.tenant_id
            JOIN fairlane.senders s ON s.id = q.sender_id
            WHERE q.destination_id = destination AND q.queued_count > 0 AND q.id <> ALL (leaving)
              AND t.tenant_set_id = set_row.id
            GROUP BY q.tenant_id, t.weight
        ) x;
        tenant_shares := fairlane.water_fill_v1(set_row.share, tenant_weights, tenant_caps);
        FOR tenant_row IN SELECT * FROM unnest(tenant_ids, tenant_shares) AS u(id, share) LOOP
            SELECT array_agg(q.id ORDER BY q.id), array_agg(s.rate_cap::double precision ORDER BY q.id)
            INTO queue_ids, queue_caps
            FROM fairlane.queues q
            JOIN fairlane.senders s ON s.id = q.sender_id
            WHERE q.destination_id = destination AND q.queued_count > 0 AND q.id <> ALL (leaving)
              AND q.tenant_id = tenant_row.id;
            queue_shares := fairlane.water_fill_v1(
                tenant_row.share, array_fill(1::double precision, ARRAY[array_length(queue_ids, 1)]), queue_caps);
            RETURN QUERY SELECT * FROM unnest(queue_ids, queue_shares);
        END LOOP;
    END LOOP;
END
$$;
