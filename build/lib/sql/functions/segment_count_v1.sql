-- Segments of a body of `units` code units: GSM-7, 160 septets in one segment, 153 per part when split;
-- UCS-2 (UTF-16 code units, a character outside the BMP is two), 70 in one segment, 67 per part.
CREATE OR REPLACE FUNCTION fairlane.segment_count_v1(units integer, gsm7 boolean) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN gsm7 THEN CASE WHEN units <= 160 THEN 1 ELSE ceil(units / 153.0)::integer END
        ELSE CASE WHEN units <= 70 THEN 1 ELSE ceil(units / 67.0)::integer END
    END
$$;
