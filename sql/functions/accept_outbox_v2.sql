-- The outbox trigger: every INSERT ... VALUES / SELECT, COPY and fairlane.submit() into fairlane.outbox
-- passes through it, strict (the first bad row aborts the whole statement). Rows live only until the end of
-- their statement: the trigger hands them to accept_v3 and deletes them.
-- fairlane.last_message_id (transaction-local setting) holds the id of the statement's last row.
CREATE OR REPLACE FUNCTION fairlane.accept_outbox_v2() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    first_row bigint;
    last_row bigint;
    last_id bigint;
BEGIN
    SELECT min(n.row_number), max(n.row_number) INTO first_row, last_row FROM new_rows n;
    IF first_row IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT a.message_id INTO last_id
    FROM fairlane.accept_v3(
        ARRAY(
            SELECT ROW(n.tenant, n.recipient, n.body, n.sender, n.destination, n.idempotency_key, n.send_at,
                       n.validity_seconds, n.status_callback, n.priority)::fairlane.submission_v2
            FROM new_rows n ORDER BY n.row_number
        ),
        true
    ) a
    ORDER BY a.ordinal DESC
    LIMIT 1;
    DELETE FROM fairlane.outbox o WHERE o.row_number BETWEEN first_row AND last_row;
    PERFORM set_config('fairlane.last_message_id', last_id::text, true);
    RETURN NULL;
END
$$;
