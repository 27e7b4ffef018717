-- Segment counting: the billing and throttling unit (SPEC §1).
-- GSM-7 when every character is in the GSM 03.38 basic set or its extension table (the extension
-- characters ^ { } \ [ ~ ] | € and form feed take two septets): 160 septets in one segment, 153 per part
-- when split. Anything else is UCS-2, counted in UTF-16 code units (a character outside the BMP is two):
-- 70 in one segment, 67 per part. The functions are not STRICT, so the planner inlines them into the
-- set-wise queries of the submission path.

CREATE FUNCTION fairlane.is_gsm7_v1(body text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT body ~ '^[@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&''()*+,\-./0-9:;<=>?¡A-ZÄÖÑÜ§¿a-zäöñüà\f^{}\\\[~\]|€]*$'
$$;

-- Code units of the encoding: septets for GSM-7, UTF-16 code units for UCS-2.
CREATE FUNCTION fairlane.encoded_length_v1(body text, gsm7 boolean) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN gsm7 THEN 2 * char_length(body) - char_length(translate(body, '^{}\[~]|€' || chr(12), ''))
        ELSE 2 * char_length(body) - char_length(regexp_replace(body, '[\U00010000-\U0010FFFF]', '', 'g'))
    END
$$;

CREATE FUNCTION fairlane.segment_count_v1(units integer, gsm7 boolean) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN gsm7 THEN CASE WHEN units <= 160 THEN 1 ELSE ceil(units / 153.0)::integer END
        ELSE CASE WHEN units <= 70 THEN 1 ELSE ceil(units / 67.0)::integer END
    END
$$;

CREATE FUNCTION fairlane.segments_v1(body text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT fairlane.segment_count_v1(fairlane.encoded_length_v1(body, fairlane.is_gsm7_v1(body)),
                                     fairlane.is_gsm7_v1(body))
$$;
