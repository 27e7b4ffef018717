-- Hierarchical weighted max-min fair shares (SPEC §2), stored per active queue in queues.portion.

-- Weighted max-min (water-filling): divide `capacity` among claimants by `weights`, none above its cap
-- (NULL: no cap); what a capped claimant cannot use goes to the others.
CREATE FUNCTION fairlane.water_fill_v1(capacity double precision, weights double precision[],
                                       caps double precision[])
RETURNS double precision[]
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    n integer := coalesce(array_length(weights, 1), 0);
    shares double precision[] := array_fill(0::double precision, ARRAY[n]);
    fixed boolean[] := array_fill(false, ARRAY[n]);
    remaining double precision := greatest(capacity, 0);
    total_weight double precision;
    capped_any boolean;
BEGIN
    IF n = 0 THEN
        RETURN shares;
    END IF;
    LOOP
        total_weight := 0;
        FOR i IN 1..n LOOP
            IF NOT fixed[i] THEN
                total_weight := total_weight + weights[i];
            END IF;
        END LOOP;
        EXIT WHEN total_weight <= 0;
        capped_any := false;
        FOR i IN 1..n LOOP
            IF NOT fixed[i] AND caps[i] IS NOT NULL AND remaining * weights[i] / total_weight >= caps[i] THEN
                shares[i] := caps[i];
                fixed[i] := true;
                capped_any := true;
            END IF;
        END LOOP;
        IF capped_any THEN
            remaining := greatest(capacity, 0);
            FOR i IN 1..n LOOP
                IF fixed[i] THEN
                    remaining := remaining - shares[i];
                END IF;
            END LOOP;
            remaining := greatest(remaining, 0);
        ELSE
            FOR i IN 1..n LOOP
                IF NOT fixed[i] THEN
                    shares[i] := remaining * weights[i] / total_weight;
                END IF;
            END LOOP;
            EXIT;
        END IF;
    END LOOP;
    RETURN shares;
END
$$;

-- The portion of every active queue of a destination:
--   sets: absolute sets first get their rate (at most their demand cap, scaled down if together above R);
--         weighted sets share the rest by weight (allocation weight, else the set's weight); capacity left
--         over (every weighted set capped, or none active) goes to the absolute sets by their rates;
--   tenants: a set's share by tenant weight; queues: a tenant's share equally over its active senders.
-- At every level a claimant's cap is what its queues can use (the sum of sender rate caps; no cap when a
-- sender has none), and what it cannot use goes to its siblings (weighted max-min, work-conserving).
CREATE FUNCTION fairlane.compute_portions_v1(destination bigint)
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
    FROM fairlane.queue_portions_v1(ARRAY[destination], '{}') p;
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
        WHERE q.destination_id = destination AND q.queued_count > 0
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
            WHERE q.destination_id = destination AND q.queued_count > 0 AND t.tenant_set_id = set_row.id
            GROUP BY q.tenant_id, t.weight
        ) x;
        tenant_shares := fairlane.water_fill_v1(set_row.share, tenant_weights, tenant_caps);
        FOR tenant_row IN SELECT * FROM unnest(tenant_ids, tenant_shares) AS u(id, share) LOOP
            SELECT array_agg(q.id ORDER BY q.id), array_agg(s.rate_cap::double precision ORDER BY q.id)
            INTO queue_ids, queue_caps
            FROM fairlane.queues q
            JOIN fairlane.senders s ON s.id = q.sender_id
            WHERE q.destination_id = destination AND q.queued_count > 0 AND q.tenant_id = tenant_row.id;
            queue_shares := fairlane.water_fill_v1(
                tenant_row.share, array_fill(1::double precision, ARRAY[array_length(queue_ids, 1)]), queue_caps);
            RETURN QUERY SELECT * FROM unnest(queue_ids, queue_shares);
        END LOOP;
    END LOOP;
END
$$;

-- Store fresh portions on the destination's queues (NULL on inactive ones); a portion that moved by less
-- than 1% is left as it is, so small tenants coming and going do not rewrite every queue. Queues locked by
-- a concurrent statement are skipped; returns false when any was, so the caller retries later.
CREATE FUNCTION fairlane.refresh_portions_v1(destination bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    wanted_count integer;
    locked_count integer;
BEGIN
    WITH fresh AS (
        SELECT * FROM fairlane.compute_portions_v1(destination)
    ),
    wanted AS (
        SELECT q.id, f.portion
        FROM fairlane.queues q
        LEFT JOIN fresh f ON f.queue_id = q.id
        WHERE q.destination_id = destination AND (q.queued_count > 0 OR q.portion IS NOT NULL)
          AND ((q.portion IS NULL) <> (f.portion IS NULL) OR abs(q.portion - f.portion) > 0.01 * q.portion)
    ),
    lockable AS (
        SELECT q.id FROM fairlane.queues q
        WHERE q.id IN (SELECT w.id FROM wanted w)
        ORDER BY q.id
        FOR NO KEY UPDATE SKIP LOCKED
    ),
    updated AS (
        UPDATE fairlane.queues q SET portion = w.portion
        FROM lockable l JOIN wanted w ON w.id = l.id
        WHERE q.id = l.id
        RETURNING q.id
    )
    SELECT (SELECT count(*) FROM wanted), (SELECT count(*) FROM updated) INTO wanted_count, locked_count;
    RETURN locked_count = wanted_count;
END
$$;
