-- Why accept_v2 refused a row: the stable error code (raise_v1 maps it to a SQLSTATE), the field, the
-- offending value, a message and, for queue_overflow, details such as retry_after_seconds.
CREATE TYPE fairlane.row_error_v2 AS (code text, field text, value text, message text, details jsonb);
