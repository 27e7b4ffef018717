-- accept_v2's result for one item of submit_json_v1, kept until the next statement reads the messages.
CREATE TYPE fairlane.accepted_v1 AS (
    ordinal bigint, message_id bigint, replayed boolean, error fairlane.row_error_v2
);
