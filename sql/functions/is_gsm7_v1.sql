-- Whether a body is GSM-7: every character is in the GSM 03.38 basic set or its extension table (the
-- extension characters ^ { } \ [ ~ ] | € and form feed take two septets). Anything else is UCS-2.
-- Not STRICT, like the other segment functions, so the planner inlines it into the set-wise queries of
-- the submission path.
CREATE OR REPLACE FUNCTION fairlane.is_gsm7_v1(body text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT body ~ '^[@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&''()*+,\-./0-9:;<=>?¡A-ZÄÖÑÜ§¿a-zäöñüà\f^{}\\\[~\]|€]*$'
$$;
