-- Segment counting as an SMPP gateway splits a body (service/workers/gateways/smpp_text.py): segments_v1's
-- encodings and sizes (GSM-7 160 septets in one segment, 153 per part when split; UCS-2 70 / 67 UTF-16 code
-- units), but no part ends inside a character (character_parts_v1), which may cost one part more than
-- segments_v1 counts ('a' * 152 || '€' || 'a' * 152: 3, not 2). A body without a character that takes two
-- units (an extension character in GSM-7, one outside the BMP in UCS-2) splits at fixed sizes, as segments_v1
-- counts. Not STRICT, and a single expression, so the planner inlines it like segments_v1.
CREATE OR REPLACE FUNCTION fairlane.segments_v2(body text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN body !~ '[\^{}\\\[~\]|€\f\U00010000-\U0010FFFF]' THEN fairlane.segments_v1(body)
        ELSE fairlane.character_parts_v1(body, fairlane.is_gsm7_v1(body))
    END
$$;
