-- Code units of the encoding: septets for GSM-7, UTF-16 code units for UCS-2.
CREATE OR REPLACE FUNCTION fairlane.encoded_length_v1(body text, gsm7 boolean) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN gsm7 THEN 2 * char_length(body) - char_length(translate(body, '^{}\[~]|€' || chr(12), ''))
        ELSE 2 * char_length(body) - char_length(regexp_replace(body, '[\U00010000-\U0010FFFF]', '', 'g'))
    END
$$;
