-- The submission path (SPEC §4, §5): every row inserted into fairlane.outbox, by INSERT ... VALUES,
-- INSERT ... SELECT, COPY or fairlane.submit(), passes through this statement-level trigger, which applies
-- all rules set-wise (one pass per step over the statement's rows, never row by row):
--   1. resolve and validate: tenant, recipient (E.164), body, sender (given, or the tenant's sender with the
--      longest matching route), destination (given, or the longest route prefix for the sender's type),
--      send_at, validity, callback URL, idempotency key; segments and encoding;
--   2. idempotency: a key seen in the last 24 h with the same request replays the original message, with a
--      different request fails with idempotency_mismatch (also between rows of one statement);
--   3. queues: one per (tenant, destination, sender), created on first use;
--   4. admission: with the statement's queues locked in id order, reject a row whose queue's projected
--      drain time (queued segments / the queue's portion) would exceed the destination's max_drain_seconds
--      or the row's own validity;
--   5. write messages and their first events, bump the queues' counters, empty the outbox.
-- The first bad row aborts the whole statement with an error naming the row, the field and the value.
-- Message ids are drawn in statement order, so FIFO within a queue follows the order of the rows.
-- fairlane.last_message_id (transaction-local setting) holds the id of the statement's last row.

CREATE TYPE fairlane.staged_message_v1 AS (
    ordinal bigint,
    message_id bigint,
    replayed boolean,
    tenant_id bigint,
    sender_id bigint,
    destination_id bigint,
    recipient text,
    body text,
    segments integer,
    encoding text,
    send_at timestamptz,
    expires_at timestamptz,
    validity_seconds integer,
    status_callback text,
    idempotency_key text,
    request_hash text,
    error fairlane.row_error_v1
);

CREATE FUNCTION fairlane.accept_outbox_v1() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET work_mem = '64MB'  -- sorts and hashes over a large statement's rows stay in memory
AS $$
DECLARE
    staged fairlane.staged_message_v1[];  -- the statement's rows, resolved, in statement order
    queue_of bigint[];                    -- queue id by ordinal
    ids bigint[];                         -- new message id by ordinal
    bad record;
    row_count bigint;
    first_row bigint;
    last_row bigint;
    route_key_length integer;
    new_keys bigint;
    claimed_keys bigint;
BEGIN
    SELECT count(*), min(n.row_number), max(n.row_number) INTO row_count, first_row, last_row FROM new_rows n;
    IF row_count = 0 THEN
        RETURN NULL;
    END IF;
    ids := ARRAY(SELECT nextval('fairlane.messages_id_seq') FROM generate_series(1, row_count));

    -- 1. Resolve every row, find its first rule violation and look up its idempotency key. Rows that
    -- share tenant, sender, destination and the first route_key_length characters of the recipient (no
    -- route prefix is longer) resolve alike, so sender and route lookups run once per such group.
    SELECT coalesce(max(length(r.prefix)), 1) INTO route_key_length FROM fairlane.routes r;
    staged := ARRAY(
        WITH numbered AS (
            SELECT n.*,
                   row_number() OVER (ORDER BY n.row_number) AS ordinal,
                   left(n.recipient, route_key_length) AS route_key,
                   ROW(n.tenant, n.sender, n.destination, left(n.recipient, route_key_length))::text AS group_key
            FROM new_rows n
        ),
        groups AS (
            SELECT DISTINCT ON (nb.group_key) nb.group_key, nb.tenant, nb.sender, nb.destination, nb.route_key
            FROM numbered nb
        ),
        resolved AS (
            SELECT g.group_key, t.id AS tenant_id, s.id AS sender_id, s.type AS sender_type,
                   d.id AS destination_id, d.default_validity_seconds
            FROM groups g
            LEFT JOIN fairlane.tenants t ON t.name = g.tenant
            LEFT JOIN LATERAL (
                -- the named sender, or the tenant's sender whose type has the longest matching route
                SELECT sd.id, sd.type
                FROM fairlane.senders sd
                WHERE sd.tenant_id = t.id AND (g.sender IS NULL OR sd.address = g.sender)
                ORDER BY (
                    SELECT max(length(r.prefix)) FROM fairlane.routes r
                    WHERE g.sender IS NULL AND r.sender_type = sd.type AND starts_with(g.route_key, r.prefix)
                ) DESC NULLS LAST, sd.id
                LIMIT 1
            ) s ON true
            LEFT JOIN LATERAL (
                -- the named destination, or the longest matching route for the sender's type
                SELECT dn.id, dn.default_validity_seconds
                FROM fairlane.destinations dn
                WHERE dn.code = g.destination
                UNION ALL
                (SELECT dr.id, dr.default_validity_seconds
                 FROM fairlane.routes r
                 JOIN fairlane.destinations dr ON dr.id = r.destination_id
                 WHERE g.destination IS NULL AND r.sender_type = s.type AND starts_with(g.route_key, r.prefix)
                 ORDER BY length(r.prefix) DESC
                 LIMIT 1)
            ) d ON true
        ),
        checked AS (
            SELECT nb.ordinal, rs.tenant_id, rs.sender_id, rs.destination_id,
                   nb.recipient, nb.body, fairlane.is_gsm7_v1(nb.body) AS gsm7, nb.send_at,
                   coalesce(nb.validity_seconds, rs.default_validity_seconds) AS validity_seconds,
                   nb.status_callback, nb.idempotency_key,
                   -- NULL-preserving, independent of the session's time zone
                   md5(jsonb_build_array(nb.recipient, nb.body, nb.sender, nb.destination,
                                         extract(epoch FROM nb.send_at), nb.validity_seconds,
                                         nb.status_callback)::text) AS request_hash,
                   k.message_id AS original_id, k.request_hash AS original_hash,
                   CASE
                       WHEN nb.tenant IS NULL THEN
                           ROW('invalid_request', 'tenant', NULL, 'tenant is required')::fairlane.row_error_v1
                       WHEN rs.tenant_id IS NULL THEN
                           ROW('not_found', 'tenant', nb.tenant,
                               format('unknown tenant %s', quote_literal(nb.tenant)))::fairlane.row_error_v1
                       WHEN nb.recipient IS NULL THEN
                           ROW('invalid_request', 'recipient', NULL, 'recipient is required')::fairlane.row_error_v1
                       WHEN nb.recipient !~ '^\+[1-9][0-9]{6,14}$' THEN
                           ROW('invalid_request', 'recipient', nb.recipient,
                               format('recipient %s is not an E.164 number such as +15551234567',
                                      quote_literal(nb.recipient)))::fairlane.row_error_v1
                       WHEN nb.body IS NULL OR nb.body = '' THEN
                           ROW('invalid_request', 'body', nb.body, 'body must not be empty')::fairlane.row_error_v1
                       WHEN char_length(nb.body) > 1600 THEN
                           ROW('invalid_request', 'body', left(nb.body, 40) || '...',
                               format('body has %s characters; at most 1600 are allowed',
                                      char_length(nb.body)))::fairlane.row_error_v1
                       WHEN nb.sender IS NOT NULL AND rs.sender_id IS NULL THEN
                           ROW('invalid_request', 'sender', nb.sender,
                               format('sender %s is not registered for tenant %s',
                                      quote_literal(nb.sender), quote_literal(nb.tenant)))::fairlane.row_error_v1
                       WHEN rs.sender_id IS NULL THEN
                           ROW('invalid_request', 'sender', NULL,
                               format('tenant %s has no sender; register one or name it',
                                      quote_literal(nb.tenant)))::fairlane.row_error_v1
                       WHEN nb.destination IS NOT NULL AND rs.destination_id IS NULL THEN
                           ROW('unknown_destination', 'destination', nb.destination,
                               format('unknown destination %s', quote_literal(nb.destination)))::fairlane.row_error_v1
                       WHEN rs.destination_id IS NULL THEN
                           ROW('unknown_destination', 'recipient', nb.recipient,
                               format('no route for recipient %s from a %s sender',
                                      quote_literal(nb.recipient), rs.sender_type))::fairlane.row_error_v1
                       WHEN nb.send_at > now() + interval '35 days' THEN
                           ROW('invalid_request', 'send_at', nb.send_at::text,
                               format('send_at %s is more than 35 days ahead', nb.send_at))::fairlane.row_error_v1
                       WHEN nb.send_at < now() - interval '1 minute' THEN
                           ROW('invalid_request', 'send_at', nb.send_at::text,
                               format('send_at %s is in the past', nb.send_at))::fairlane.row_error_v1
                       WHEN nb.validity_seconds NOT BETWEEN 1 AND 36000 THEN
                           ROW('invalid_request', 'validity_seconds', nb.validity_seconds::text,
                               format('validity_seconds %s is outside 1..36000', nb.validity_seconds))::fairlane.row_error_v1
                       WHEN nb.status_callback !~ '^https?://[^[:space:]]+$'
                            OR length(nb.status_callback) > 2048 THEN
                           ROW('invalid_request', 'status_callback', left(nb.status_callback, 100),
                               format('status_callback %s is not an http(s) URL of at most 2048 characters',
                                      quote_literal(left(nb.status_callback, 100))))::fairlane.row_error_v1
                       WHEN nb.idempotency_key = '' OR length(nb.idempotency_key) > 255 THEN
                           ROW('invalid_request', 'idempotency_key', left(nb.idempotency_key, 100),
                               'idempotency_key must have 1 to 255 characters')::fairlane.row_error_v1
                   END AS error
            FROM numbered nb
            JOIN resolved rs ON rs.group_key = nb.group_key
            LEFT JOIN fairlane.idempotency_keys k
                ON k.tenant_id = rs.tenant_id AND k.key = nb.idempotency_key
               AND k.created_at > now() - interval '24 hours'
        ),
        first_uses AS (
            -- a key repeated inside the statement replays (or mismatches) its first row
            SELECT DISTINCT ON (c.tenant_id, c.idempotency_key)
                   c.tenant_id, c.idempotency_key, c.ordinal, c.request_hash
            FROM checked c
            WHERE c.idempotency_key IS NOT NULL
            ORDER BY c.tenant_id, c.idempotency_key, c.ordinal
        )
        SELECT ROW(
            c.ordinal,
            coalesce(c.original_id, ids[coalesce(f.ordinal, c.ordinal)]),
            c.original_id IS NOT NULL OR coalesce(f.ordinal < c.ordinal, false),
            c.tenant_id, c.sender_id, c.destination_id, c.recipient, c.body,
            fairlane.segment_count_v1(fairlane.encoded_length_v1(c.body, c.gsm7), c.gsm7),
            CASE WHEN c.gsm7 THEN 'GSM-7' ELSE 'UCS-2' END,
            c.send_at,
            greatest(c.send_at, now()) + make_interval(secs => c.validity_seconds),
            c.validity_seconds, c.status_callback, c.idempotency_key, c.request_hash,
            CASE
                WHEN (c.error).code IS NOT NULL THEN c.error
                WHEN c.original_hash <> c.request_hash OR f.request_hash <> c.request_hash THEN
                    ROW('idempotency_mismatch', 'idempotency_key', c.idempotency_key,
                        format('idempotency key %s was used with a different request in the last 24 hours',
                               quote_literal(c.idempotency_key)))::fairlane.row_error_v1
            END
        )::fairlane.staged_message_v1
        FROM checked c
        LEFT JOIN first_uses f ON f.tenant_id = c.tenant_id AND f.idempotency_key = c.idempotency_key
        ORDER BY c.ordinal
    );

    SELECT s.ordinal, (s.error).* INTO bad
    FROM unnest(staged) s WHERE (s.error).code IS NOT NULL ORDER BY s.ordinal LIMIT 1;
    IF FOUND THEN
        PERFORM fairlane.raise_v1(bad.code, bad.field, bad.value, bad.message,
                                  CASE WHEN row_count > 1 THEN bad.ordinal END);
    END IF;

    -- 2. Claim the statement's new idempotency keys (a key older than 24 h is taken over). A key claimed
    -- by a concurrent transaction since the lookup above is a retryable conflict.
    INSERT INTO fairlane.idempotency_keys AS k (tenant_id, key, request_hash, message_id)
    SELECT s.tenant_id, s.idempotency_key, s.request_hash, s.message_id
    FROM unnest(staged) s
    WHERE s.idempotency_key IS NOT NULL AND NOT s.replayed
    ORDER BY s.tenant_id, s.idempotency_key
    ON CONFLICT (tenant_id, key) DO UPDATE
        SET request_hash = excluded.request_hash, message_id = excluded.message_id, created_at = now()
        WHERE k.created_at <= now() - interval '24 hours';
    GET DIAGNOSTICS claimed_keys = ROW_COUNT;
    SELECT count(*) INTO new_keys FROM unnest(staged) s WHERE s.idempotency_key IS NOT NULL AND NOT s.replayed;
    IF claimed_keys < new_keys THEN
        RAISE EXCEPTION 'an idempotency key of this statement was used concurrently; retry the statement'
            USING ERRCODE = 'serialization_failure';
    END IF;

    -- 3. Queues, created on first use.
    INSERT INTO fairlane.queues (tenant_id, destination_id, sender_id)
    SELECT DISTINCT s.tenant_id, s.destination_id, s.sender_id
    FROM unnest(staged) s
    WHERE NOT s.replayed
    ORDER BY 1, 2, 3
    ON CONFLICT DO NOTHING;
    queue_of := ARRAY(
        SELECT q.id
        FROM unnest(staged) s
        LEFT JOIN fairlane.queues q
            ON q.tenant_id = s.tenant_id AND q.destination_id = s.destination_id AND q.sender_id = s.sender_id
        ORDER BY s.ordinal
    );

    -- 4. Admission control. The receiving queues are locked in id order (no deadlocks between concurrent
    -- statements), so concurrent submissions to one queue are checked one after another against fresh
    -- counters. One grouped pass decides when the whole statement fits every queue; otherwise a per-row
    -- pass finds the first row that does not fit.
    PERFORM q.id
    FROM fairlane.queues q
    WHERE q.id IN (
        SELECT queue_of[s.ordinal] FROM unnest(staged) s
        WHERE NOT s.replayed AND (s.send_at IS NULL OR s.send_at <= now())
    )
    ORDER BY q.id
    FOR NO KEY UPDATE;

    IF EXISTS (
        WITH per_queue AS (
            SELECT queue_of[s.ordinal] AS queue_id, sum(s.segments) AS segments, min(s.validity_seconds) AS validity
            FROM unnest(staged) s
            WHERE NOT s.replayed AND (s.send_at IS NULL OR s.send_at <= now())
            GROUP BY 1
        )
        SELECT
        FROM per_queue pq
        JOIN fairlane.queues q ON q.id = pq.queue_id
        JOIN fairlane.destinations d ON d.id = q.destination_id
        LEFT JOIN fairlane.queue_portions_v1(
            ARRAY(SELECT DISTINCT q2.destination_id FROM fairlane.queues q2 JOIN per_queue p2 ON p2.queue_id = q2.id),
            ARRAY(SELECT p3.queue_id FROM per_queue p3)
        ) p ON p.queue_id = pq.queue_id
        WHERE NOT (p.portion > 0)
           OR (q.queued_segments + pq.segments) / p.portion > least(d.max_drain_seconds, pq.validity)
    ) THEN
        WITH incoming AS (
            SELECT s.ordinal, s.validity_seconds, q.id AS queue_id, q.destination_id,
                   q.queued_segments + sum(s.segments) OVER (PARTITION BY q.id ORDER BY s.ordinal) AS backlog
            FROM unnest(staged) s
            JOIN fairlane.queues q ON q.id = queue_of[s.ordinal]
            WHERE NOT s.replayed AND (s.send_at IS NULL OR s.send_at <= now())
        ),
        portions AS (
            SELECT p.queue_id, p.portion
            FROM fairlane.queue_portions_v1(
                ARRAY(SELECT DISTINCT i.destination_id FROM incoming i),
                ARRAY(SELECT DISTINCT i.queue_id FROM incoming i)
            ) p
        )
        SELECT i.ordinal, i.backlog, p.portion, least(d.max_drain_seconds, i.validity_seconds) AS limit_seconds,
               t.name AS tenant, d.code AS destination, sd.address AS sender,
               i.backlog / nullif(p.portion, 0) AS drain_seconds
        INTO bad
        FROM incoming i
        JOIN portions p ON p.queue_id = i.queue_id
        JOIN fairlane.queues q ON q.id = i.queue_id
        JOIN fairlane.destinations d ON d.id = q.destination_id
        JOIN fairlane.tenants t ON t.id = q.tenant_id
        JOIN fairlane.senders sd ON sd.id = q.sender_id
        WHERE NOT (p.portion > 0) OR i.backlog / p.portion > least(d.max_drain_seconds, i.validity_seconds)
        ORDER BY i.ordinal
        LIMIT 1;
        IF FOUND THEN  -- the grouped check is conservative; only a row that does not fit is refused
            PERFORM fairlane.raise_v1(
                'queue_overflow', NULL, NULL,
                format('queue %s / %s / %s is full: %s queued segments would take %s s to drain at its portion of '
                       '%s segments/s, more than %s s', bad.tenant, bad.destination, bad.sender, bad.backlog,
                       coalesce(round(bad.drain_seconds::numeric)::text, 'infinite'), round(bad.portion::numeric, 3),
                       bad.limit_seconds),
                CASE WHEN row_count > 1 THEN bad.ordinal END,
                jsonb_build_object(
                    'tenant', bad.tenant, 'destination', bad.destination, 'sender', bad.sender,
                    'queued_segments', bad.backlog, 'portion', bad.portion, 'max_drain_seconds', bad.limit_seconds,
                    'retry_after_seconds', CASE WHEN bad.portion > 0 THEN ceil(bad.drain_seconds - bad.limit_seconds) END
                )
            );
        END IF;
    END IF;

    -- 5. Write.
    UPDATE fairlane.queues q
    SET queued_count = q.queued_count + c.messages, queued_segments = q.queued_segments + c.segments
    FROM (
        SELECT queue_of[s.ordinal] AS queue_id, count(*) AS messages, sum(s.segments) AS segments
        FROM unnest(staged) s
        WHERE NOT s.replayed AND (s.send_at IS NULL OR s.send_at <= now())
        GROUP BY 1
    ) c
    WHERE q.id = c.queue_id;

    INSERT INTO fairlane.messages (
        id, tenant_id, queue_id, status, recipient, body, segments, encoding,
        send_at, expires_at, status_callback, idempotency_key
    )
    SELECT s.message_id, s.tenant_id, queue_of[s.ordinal],
           CASE WHEN s.send_at > now() THEN 'scheduled' ELSE 'queued' END,
           s.recipient, s.body, s.segments, s.encoding,
           s.send_at, s.expires_at, s.status_callback, s.idempotency_key
    FROM unnest(staged) s
    WHERE NOT s.replayed;

    INSERT INTO fairlane.message_events (message_id, tenant_id, status)
    SELECT s.message_id, s.tenant_id, CASE WHEN s.send_at > now() THEN 'scheduled' ELSE 'queued' END
    FROM unnest(staged) s
    WHERE NOT s.replayed;

    DELETE FROM fairlane.outbox o WHERE o.row_number BETWEEN first_row AND last_row;

    PERFORM set_config('fairlane.last_message_id', staged[row_count].message_id::text, true);
    RETURN NULL;
END
$$;

-- One message, named arguments: SELECT fairlane.submit(tenant => 'acme', recipient => '+15551234567',
   -- body => 'hi'). Returns the message id (the original one when an idempotency key replays).
   CREATE FUNCTION fairlane.submit(
       tenant text,
       recipient text,
       body text,
       sender text DEFAULT NULL,
       destination text DEFAULT NULL,
       idempotency_key text DEFAULT NULL,
       send_at timestamptz DEFAULT NULL,
       validity_seconds integer DEFAULT NULL,
       status_callback text DEFAULT NULL
   ) RETURNS bigint
   LANGUAGE plpgsql SECURITY INVOKER AS $$
   BEGIN
       INSERT INTO fairlane.outbox (
           tenant, recipient, body, sender, destination, idempotency_key, send_at, validity_seconds, status_callback
       ) VALUES (
           submit.tenant, submit.recipient, submit.body, submit.sender, submit.destination,
           submit.idempotency_key, submit.send_at, submit.validity_seconds, submit.status_callback
       );
       RETURN current_setting('fairlane.last_message_id')::bigint;
   END
   $$;
