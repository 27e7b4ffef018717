-- Segment counting: the billing and throttling unit (SPEC §1).
-- GSM-7 when every character is in the GSM 03.38 basic set or its extension table (the extension
-- characters ^ { } \ [ ~ ] | € and form feed take two septets): 160 septets in one segment, 153 per part
-- when split. Anything else is UCS-2, counted in UTF-16 code units (a character outside the BMP is two):
-- 70 in one segment, 67 per part.

CREATE FUNCTION fairlane.is_gsm7_v1(body text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT body ~ '^[@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&''()*+,\-./0-9:;<=>?¡A-ZÄÖÑÜ§¿a-zäöñüà\f^{}\\\[~\]|€]*$'
$$;

-- Code units of the encoding: septets for GSM-7, UTF-16 code units for UCS-2.
CREATE FUNCTION fairlane.encoded_length_v1(body text) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE
        WHEN fairlane.is_gsm7_v1(body)
            THEN 2 * char_length(body) - char_length(translate(body, '^{}\[~]|€' || chr(12), ''))
        ELSE 2 * char_length(body) - char_length(regexp_replace(body, '[\U00010000-\U0010FFFF]', '', 'g'))
    END
$$;

CREATE FUNCTION fairlane.segments_v1(body text) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE
        WHEN fairlane.is_gsm7_v1(body) THEN
            CASE WHEN fairlane.encoded_length_v1(body) <= 160 THEN 1
                 ELSE ceil(fairlane.encoded_length_v1(body) / 153.0)::integer END
        ELSE
            CASE WHEN fairlane.encoded_length_v1(body) <= 70 THEN 1
                 ELSE ceil(fairlane.encoded_length_v1(body) / 67.0)::integer END
    END
$$;
