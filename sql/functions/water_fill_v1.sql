-- Hierarchical weighted max-min fair shares (SPEC §2) are computed by compute_portions_v2 and stored per
-- active queue in queues.portion by refresh_portions_v2.
-- Weighted max-min (water-filling): divide `capacity` among claimants by `weights`, none above its cap
-- (NULL: no cap); what a capped claimant cannot use goes to the others.
CREATE OR REPLACE FUNCTION fairlane.water_fill_v1(capacity double precision, weights double precision[],
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
