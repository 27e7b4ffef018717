-- Segment counting: the billing and throttling unit (SPEC §1). GSM-7 when every character is in the GSM
-- 03.38 basic set or its extension table (is_gsm7_v1), else UCS-2 (segment_count_v1 has the sizes). The
-- functions are not STRICT, so the planner inlines them into the set-wise queries of the submission path.
CREATE OR REPLACE FUNCTION fairlane.segments_v1(body text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT fairlane.segment_count_v1(fairlane.encoded_length_v1(body, fairlane.is_gsm7_v1(body)),
                                     fairlane.is_gsm7_v1(body))
$$;
