-- The parts of a body with characters that take two units (segments_v2): GSM-7 (`gsm7`, an extension
-- character is escape + code) or UCS-2 (a character outside the BMP is a surrogate pair). One part up to 160
-- septets / 70 code units; else parts of 153 / 67 units, one unit shorter when the next part would begin
-- with the second half of a character. Each two-unit character becomes a marker (chr(1); any chr(1) of the
-- body first becomes a plain unit) and one more unit, and each part is measured from the previous one.
CREATE OR REPLACE FUNCTION fairlane.character_parts_v1(body text, gsm7 boolean) RETURNS integer
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    units text := CASE
        WHEN gsm7 THEN regexp_replace(body, '[\^{}\\\[~\]|€\f]', E'\x01u', 'g')
        ELSE regexp_replace(translate(body, E'\x01', 'u'), '[\U00010000-\U0010FFFF]', E'\x01u', 'g')
    END;
    total integer := char_length(units);
    single integer := CASE WHEN gsm7 THEN 160 ELSE 70 END;
    size integer := CASE WHEN gsm7 THEN 153 ELSE 67 END;
    done integer := 0;  -- units in the parts so far
    parts integer := 0;
BEGIN
    IF total <= single THEN
        RETURN 1;
    END IF;
    WHILE done < total LOOP
        parts := parts + 1;
        -- a part whose last unit would be a marker leaves it to the next part
        done := done + size - CASE WHEN done + size < total AND substr(units, done + size, 1) = E'\x01' THEN 1
                                   ELSE 0 END;
    END LOOP;
    RETURN parts;
END
$$;
