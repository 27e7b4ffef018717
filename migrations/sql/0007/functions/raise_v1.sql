-- Every rule violation is raised here, so errors look the same from submit(), the outbox and the API.
-- SQLSTATE class FL carries the HTTP status the API maps it to; DETAIL is JSON with the stable error code,
-- the field, the offending value and, for multi-row statements, the 1-based row number.
CREATE OR REPLACE FUNCTION fairlane.raise_v1(
    code text, field text, value text, message text, ordinal bigint DEFAULT NULL, extra jsonb DEFAULT '{}'
) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING
        ERRCODE = CASE code
            WHEN 'invalid_request' THEN 'FL400'
            WHEN 'forbidden' THEN 'FL403'
            WHEN 'not_found' THEN 'FL404'
            WHEN 'unknown_destination' THEN 'FL404'
            WHEN 'not_cancelable' THEN 'FL409'
            WHEN 'receipt_too_early' THEN 'FL409'
            WHEN 'idempotency_mismatch' THEN 'FL422'
            WHEN 'queue_overflow' THEN 'FL429'
            WHEN 'scheduled_overflow' THEN 'FL429'
            ELSE 'FL500'
        END,
        MESSAGE = CASE WHEN ordinal IS NULL THEN message ELSE format('row %s: %s', ordinal, message) END,
        DETAIL = (jsonb_build_object('code', code, 'field', field, 'value', value, 'row', ordinal) || extra)::text,
        COLUMN = coalesce(field, '');
END
$$;
