-- The submission path (SPEC §4, §5). One function, fairlane.accept_v3, applies every rule to a set of
-- submissions, set-wise (one pass per step over all rows, never row by row):
--   1. resolve and validate: tenant, recipient (E.164), body, sender (given, or the tenant's sender with the
--      longest matching route), destination (given, or the longest route prefix for the sender's type),
--      send_at, validity, callback URL (callback_url_problem_v1), level of service (priority), idempotency
--      key; segments and encoding; a tenant's scheduled messages up to its cap (settings.scheduled_per_tenant,
--      tenants.scheduled_count);
--   2. queues: one per (tenant, destination, sender), created on first use;
--   3. admission: with the receiving queues locked in id order, refuse a row whose queue's projected drain
--      time (queued segments / the queue's portion, or longer when a quota window of its destination or
--      sender cannot take them before it frees: window_drain_v1, docs/decisions/0020) would exceed the
--      destination's max_drain_seconds or the row's own validity (the portion the dispatcher keeps on an
--      active queue, else computed); a row a window holds back is refused with retry_after_seconds at the
--      window's reset;
--   4. idempotency: a key seen in the last 24 h with the same request replays the original message, with a
--      different request fails with idempotency_mismatch (also between rows of one call); new keys are
--      claimed;
--   5. write messages and their first events, bump the queues' counters.
-- strict: the first bad row raises an error naming the row, the field and the value, and nothing is
-- written (the outbox trigger and fairlane.submit). Not strict: every row gets its own result and only the
-- good rows are written (the HTTP API's batches).
-- Message ids are drawn in row order, so FIFO within a queue follows the order of the rows.
CREATE OR REPLACE FUNCTION fairlane.accept_v3(submissions fairlane.submission_v2[], strict boolean)
RETURNS TABLE (ordinal bigint, message_id bigint, replayed boolean, error fairlane.row_error_v2)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET work_mem = '64MB'  -- sorts and hashes over a large call's rows stay in memory
SET plan_cache_mode = auto  -- restored on return: the body chooses per call, below
AS $$
#variable_conflict use_column
DECLARE
    staged fairlane.staged_message_v2[];  -- the rows, resolved, in order
    one fairlane.staged_message_v2;
    queue_of bigint[];                    -- queue id by ordinal
    ids bigint[];                         -- new message id by ordinal
    bad record;
    row_count bigint := coalesce(cardinality(submissions), 0);
    route_key_length integer;
    new_keys bigint;
    claimed_keys bigint;
    scheduled_cap integer;
    windows_exist boolean;
BEGIN
    IF row_count = 0 THEN
        RETURN;
    END IF;
    -- Small calls (single messages, the API's groups) reuse generic plans made once per session, saving
    -- about a third of their time; large ones are left to the planner (forcing custom plans cost 40%).
    PERFORM set_config('plan_cache_mode',
                       CASE WHEN row_count <= 100 THEN 'force_generic_plan' ELSE 'auto' END, true);
    ids := ARRAY(SELECT nextval('fairlane.messages_id_seq') FROM generate_series(1, row_count));

    -- 1. Resolve every row, find its first rule violation and look up its idempotency key. Rows that
    -- share tenant, sender, destination and the first route_key_length characters of the recipient (no
    -- route prefix is longer) resolve alike, so sender and route lookups run once per such group.
    SELECT coalesce(max(length(r.prefix)), 1) INTO route_key_length FROM fairlane.routes r;
    staged := ARRAY(
        WITH numbered AS (
            SELECT n.*,
                   left(n.recipient, route_key_length) AS route_key,
                   ROW(n.tenant, n.sender, n.destination, left(n.recipient, route_key_length))::text AS group_key
            FROM unnest(submissions) WITH ORDINALITY AS n(
                tenant, recipient, body, sender, destination, idempotency_key, send_at, validity_seconds,
                status_callback, priority, ordinal)
        ),
        groups AS (
            SELECT DISTINCT ON (nb.group_key) nb.group_key, nb.tenant, nb.sender, nb.destination, nb.route_key
            FROM numbered nb
        ),
        url_checks AS (
            -- each distinct callback URL checked once
            SELECT d.url, fairlane.callback_url_problem_v1(d.url) AS problem
            FROM (SELECT DISTINCT nb.status_callback AS url FROM numbered nb WHERE nb.status_callback IS NOT NULL) d
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
                   nb.status_callback, nb.idempotency_key, nb.priority,
                   -- NULL-preserving, independent of the session's time zone; a level other than normal counts
                   -- (a request of before levels hashes as it did)
                   md5((jsonb_build_array(nb.recipient, nb.body, nb.sender, nb.destination,
                                          extract(epoch FROM nb.send_at), nb.validity_seconds,
                                          nb.status_callback)
                        || CASE WHEN nb.priority IN ('high', 'bulk') THEN jsonb_build_array(nb.priority)
                                ELSE '[]'::jsonb END)::text) AS request_hash,
                   k.message_id AS original_id, k.request_hash AS original_hash,
                   CASE
                       WHEN nb.tenant IS NULL THEN
                           ROW('invalid_request', 'tenant', NULL, 'tenant is required', NULL)::fairlane.row_error_v2
                       WHEN rs.tenant_id IS NULL THEN
                           ROW('not_found', 'tenant', nb.tenant,
                               format('unknown tenant %s', quote_literal(nb.tenant)), NULL)::fairlane.row_error_v2
                       WHEN nb.recipient IS NULL THEN
                           ROW('invalid_request', 'recipient', NULL, 'recipient is required', NULL)::fairlane.row_error_v2
                       WHEN nb.recipient !~ '^\+[1-9][0-9]{6,14}$' THEN
                           ROW('invalid_request', 'recipient', nb.recipient,
                               format('recipient %s is not an E.164 number such as +15551234567',
                                      quote_literal(nb.recipient)), NULL)::fairlane.row_error_v2
                       WHEN nb.body IS NULL OR nb.body = '' THEN
                           ROW('invalid_request', 'body', nb.body, 'body must not be empty', NULL)::fairlane.row_error_v2
                       WHEN char_length(nb.body) > 1600 THEN
                           ROW('invalid_request', 'body', left(nb.body, 40) || '...',
                               format('body has %s characters; at most 1600 are allowed',
                                      char_length(nb.body)), NULL)::fairlane.row_error_v2
                       WHEN nb.sender IS NOT NULL AND rs.sender_id IS NULL THEN
                           ROW('invalid_request', 'sender', nb.sender,
                               format('sender %s is not registered for tenant %s',
                                      quote_literal(nb.sender), quote_literal(nb.tenant)), NULL)::fairlane.row_error_v2
                       WHEN rs.sender_id IS NULL THEN
                           ROW('invalid_request', 'sender', NULL,
                               format('tenant %s has no sender; register one or name it',
                                      quote_literal(nb.tenant)), NULL)::fairlane.row_error_v2
                       WHEN nb.destination IS NOT NULL AND rs.destination_id IS NULL THEN
                           ROW('unknown_destination', 'destination', nb.destination,
                               format('unknown destination %s', quote_literal(nb.destination)), NULL)::fairlane.row_error_v2
                       WHEN rs.destination_id IS NULL THEN
                           ROW('unknown_destination', 'recipient', nb.recipient,
                               format('no route for recipient %s from a %s sender',
                                      quote_literal(nb.recipient), rs.sender_type), NULL)::fairlane.row_error_v2
                       WHEN nb.send_at > now() + interval '35 days' THEN
                           ROW('invalid_request', 'send_at', nb.send_at::text,
                               format('send_at %s is more than 35 days ahead', nb.send_at), NULL)::fairlane.row_error_v2
                       WHEN nb.send_at < now() - interval '1 minute' THEN
                           ROW('invalid_request', 'send_at', nb.send_at::text,
                               format('send_at %s is in the past', nb.send_at), NULL)::fairlane.row_error_v2
                       WHEN nb.validity_seconds NOT BETWEEN 1 AND 36000 THEN
                           ROW('invalid_request', 'validity_seconds', nb.validity_seconds::text,
                               format('validity_seconds %s is outside 1..36000', nb.validity_seconds), NULL)::fairlane.row_error_v2
                       WHEN u.problem IS NOT NULL THEN
                           ROW('invalid_request', 'status_callback', left(nb.status_callback, 100),
                               format('status_callback %s %s', quote_literal(left(nb.status_callback, 100)),
                                      u.problem), NULL)::fairlane.row_error_v2
                       WHEN nb.priority NOT IN ('high', 'normal', 'bulk') THEN
                           ROW('invalid_request', 'priority', left(nb.priority, 100),
                               format('priority %s is not one of high, normal, bulk',
                                      quote_literal(left(nb.priority, 100))), NULL)::fairlane.row_error_v2
                       WHEN nb.idempotency_key = '' OR length(nb.idempotency_key) > 255 THEN
                           ROW('invalid_request', 'idempotency_key', left(nb.idempotency_key, 100),
                               'idempotency_key must have 1 to 255 characters', NULL)::fairlane.row_error_v2
                   END AS error
            FROM numbered nb
            JOIN resolved rs ON rs.group_key = nb.group_key
            LEFT JOIN url_checks u ON u.url = nb.status_callback
            LEFT JOIN fairlane.idempotency_keys k
                ON k.tenant_id = rs.tenant_id AND k.key = nb.idempotency_key
               AND k.created_at > now() - interval '24 hours'
        ),
        first_uses AS (
            -- a key repeated inside the statement replays (or mismatches) its first valid row
            SELECT DISTINCT ON (c.tenant_id, c.idempotency_key)
                   c.tenant_id, c.idempotency_key, c.ordinal, c.request_hash
            FROM checked c
            WHERE c.idempotency_key IS NOT NULL AND (c.error).code IS NULL AND c.original_id IS NULL
            ORDER BY c.tenant_id, c.idempotency_key, c.ordinal
        )
        SELECT ROW(
            c.ordinal,
            -- a row that breaks a rule keeps its own (unused) id, so no later row can share its fate
            coalesce(c.original_id, ids[CASE WHEN (c.error).code IS NULL THEN coalesce(f.ordinal, c.ordinal)
                                             ELSE c.ordinal END]),
            c.original_id IS NOT NULL OR coalesce(f.ordinal < c.ordinal, false),
            c.tenant_id, c.sender_id, c.destination_id, c.recipient, c.body,
            fairlane.segments_v2(c.body),
            CASE WHEN c.gsm7 THEN 'GSM-7' ELSE 'UCS-2' END,
            c.send_at,
            greatest(c.send_at, now()) + make_interval(secs => c.validity_seconds),
            c.validity_seconds, c.status_callback, c.idempotency_key, c.request_hash,
            CASE
                -- a replay returns the original message, whatever today's rules say of the request
                WHEN c.original_hash = c.request_hash THEN NULL
                WHEN c.original_hash <> c.request_hash THEN
                    ROW('idempotency_mismatch', 'idempotency_key', c.idempotency_key,
                        format('idempotency key %s was used with a different request in the last 24 hours',
                               quote_literal(c.idempotency_key)), NULL)::fairlane.row_error_v2
                WHEN (c.error).code IS NOT NULL THEN c.error
                WHEN f.request_hash <> c.request_hash THEN
                    ROW('idempotency_mismatch', 'idempotency_key', c.idempotency_key,
                        format('idempotency key %s was used with a different request in the last 24 hours',
                               quote_literal(c.idempotency_key)), NULL)::fairlane.row_error_v2
            END,
            CASE c.priority WHEN 'high' THEN 0 WHEN 'bulk' THEN 2 ELSE 1 END
        )::fairlane.staged_message_v2
        FROM checked c
        LEFT JOIN first_uses f ON f.tenant_id = c.tenant_id AND f.idempotency_key = c.idempotency_key
        ORDER BY c.ordinal
    );

    IF strict THEN
        SELECT s.ordinal, (s.error).* INTO bad
        FROM unnest(staged) s WHERE (s.error).code IS NOT NULL ORDER BY s.ordinal LIMIT 1;
        IF FOUND THEN
            PERFORM fairlane.raise_v1(bad.code, bad.field, bad.value, bad.message,
                                      CASE WHEN row_count > 1 THEN bad.ordinal END);
        END IF;
    END IF;

    -- The cap on scheduled messages: a tenant holds at most settings.scheduled_per_tenant of them
    -- (tenants.scheduled_count, which every path in and out of 'scheduled' keeps), rows past it are refused in
    -- order. The tenants are locked (in id order, before any queue), so concurrent calls count one after another.
    IF EXISTS (SELECT FROM unnest(staged) s WHERE s.send_at > now() AND NOT s.replayed AND (s.error).code IS NULL) THEN
        SELECT st.scheduled_per_tenant INTO scheduled_cap FROM fairlane.settings st;
        PERFORM t.id
        FROM fairlane.tenants t
        WHERE t.id IN (SELECT s.tenant_id FROM unnest(staged) s
                       WHERE s.send_at > now() AND NOT s.replayed AND (s.error).code IS NULL)
        ORDER BY t.id
        FOR NO KEY UPDATE;
        FOR bad IN
            WITH incoming AS (
                SELECT s.ordinal, s.tenant_id, row_number() OVER (PARTITION BY s.tenant_id ORDER BY s.ordinal) AS n
                FROM unnest(staged) s
                WHERE s.send_at > now() AND NOT s.replayed AND (s.error).code IS NULL
            )
            SELECT i.ordinal, t.scheduled_count AS scheduled, t.name AS tenant
            FROM incoming i
            JOIN fairlane.tenants t ON t.id = i.tenant_id
            WHERE t.scheduled_count + i.n > scheduled_cap
            ORDER BY i.ordinal
        LOOP
            one := staged[bad.ordinal];
            one.error := ROW(
                'scheduled_overflow', 'send_at', one.send_at::text,
                format('tenant %s has %s scheduled messages, as many as it may hold (%s); send it later or cancel '
                       'some', bad.tenant, bad.scheduled, scheduled_cap),
                jsonb_build_object('tenant', bad.tenant, 'scheduled', bad.scheduled,
                                   'scheduled_per_tenant', scheduled_cap, 'retry_after_seconds', 60)
            )::fairlane.row_error_v2;
            IF strict THEN
                PERFORM fairlane.raise_v1((one.error).code, (one.error).field, (one.error).value, (one.error).message,
                                          CASE WHEN row_count > 1 THEN bad.ordinal END, (one.error).details);
            END IF;
            staged[bad.ordinal] := one;
        END LOOP;
    END IF;

    -- 2. Queues, created on first use.
    INSERT INTO fairlane.queues (tenant_id, destination_id, sender_id)
    SELECT DISTINCT s.tenant_id, s.destination_id, s.sender_id
    FROM unnest(staged) s
    WHERE NOT s.replayed AND (s.error).code IS NULL
    ORDER BY 1, 2, 3
    ON CONFLICT DO NOTHING;
    queue_of := ARRAY(
        SELECT q.id
        FROM unnest(staged) s
        LEFT JOIN fairlane.queues q
            ON q.tenant_id = s.tenant_id AND q.destination_id = s.destination_id AND q.sender_id = s.sender_id
        ORDER BY s.ordinal
    );

    -- 3. Admission control. The receiving queues are locked in id order (no deadlocks between concurrent
    -- calls), so concurrent submissions to one queue are checked one after another against fresh counters.
    -- Quota windows count when there are any (window_drain_v1).
    -- A queue's portion is the one the dispatcher keeps on it while it is active, else computed (a queue
    -- about to join). One grouped pass decides when all rows fit; otherwise a per-row pass over running
    -- totals finds the rows that do not fit (a refused row still counts, so a queue's later rows are
    -- refused too: acceptance resumes in order, never by skipping ahead).
    PERFORM q.id
    FROM fairlane.queues q
    WHERE q.id IN (
        SELECT queue_of[s.ordinal] FROM unnest(staged) s
        WHERE NOT s.replayed AND (s.error).code IS NULL AND (s.send_at IS NULL OR s.send_at <= now())
    )
    ORDER BY q.id
    FOR NO KEY UPDATE;
    windows_exist := EXISTS (SELECT FROM fairlane.quota_windows);

    IF EXISTS (
        WITH per_queue AS (
            -- per queue and level: a high-priority message waits behind the high ones only (level_backlog_v1)
            SELECT queue_of[s.ordinal] AS queue_id, s.priority, sum(s.segments) AS segments,
                   min(s.validity_seconds) AS validity
            FROM unnest(staged) s
            WHERE NOT s.replayed AND (s.error).code IS NULL AND (s.send_at IS NULL OR s.send_at <= now())
            GROUP BY 1, 2
        ),
        portions AS (
            SELECT DISTINCT ON (pq.queue_id)
                   pq.queue_id, coalesce(CASE WHEN q.queued_count > 0 THEN q.portion END, p.portion) AS portion
            FROM per_queue pq
            JOIN fairlane.queues q ON q.id = pq.queue_id
            LEFT JOIN fairlane.queue_portions_v2(
                ARRAY(SELECT DISTINCT q2.destination_id FROM fairlane.queues q2 JOIN per_queue p2 ON p2.queue_id = q2.id
                      WHERE q2.queued_count = 0 OR q2.portion IS NULL),
                ARRAY(SELECT q3.id FROM fairlane.queues q3 JOIN per_queue p3 ON p3.queue_id = q3.id
                      WHERE q3.queued_count = 0 OR q3.portion IS NULL)
            ) p ON p.queue_id = pq.queue_id
        )
        SELECT
        FROM per_queue pq
        JOIN portions p ON p.queue_id = pq.queue_id
        JOIN fairlane.queues q ON q.id = pq.queue_id
        JOIN fairlane.destinations d ON d.id = q.destination_id
        CROSS JOIN LATERAL (
            SELECT fairlane.level_backlog_v1(q.id, pq.priority, q.queued_segments) + pq.segments AS segments
        ) b
        WHERE NOT (p.portion > 0)
           OR CASE WHEN windows_exist
                   THEN (SELECT wd.drain_seconds
                         FROM fairlane.window_drain_v1(q.destination_id, q.sender_id, p.portion, b.segments, now()) wd)
                   ELSE b.segments / p.portion
              END > least(d.max_drain_seconds, pq.validity)
    ) THEN
        FOR bad IN
            WITH incoming AS (
                SELECT s.ordinal, s.validity_seconds, q.id AS queue_id, q.destination_id, q.queued_count,
                       q.portion AS kept_portion,
                       fairlane.level_backlog_v1(q.id, s.priority, q.queued_segments)
                           + sum(s.segments) OVER (PARTITION BY q.id, s.priority = 0 ORDER BY s.ordinal) AS backlog
                FROM unnest(staged) s
                JOIN fairlane.queues q ON q.id = queue_of[s.ordinal]
                WHERE NOT s.replayed AND (s.error).code IS NULL AND (s.send_at IS NULL OR s.send_at <= now())
            ),
            computed AS (
                SELECT p.queue_id, p.portion
                FROM fairlane.queue_portions_v2(
                    ARRAY(SELECT DISTINCT i.destination_id FROM incoming i),
                    ARRAY(SELECT DISTINCT i.queue_id FROM incoming i)
                ) p
            ),
            checked AS (
                SELECT i.*, coalesce(CASE WHEN i.queued_count > 0 THEN i.kept_portion END, c.portion) AS portion
                FROM incoming i
                LEFT JOIN computed c ON c.queue_id = i.queue_id
            )
            SELECT i.ordinal, i.backlog, i.portion, least(d.max_drain_seconds, i.validity_seconds) AS limit_seconds,
                   t.name AS tenant, d.code AS destination, sd.address AS sender,
                   coalesce(wd.drain_seconds, i.backlog / nullif(i.portion, 0)) AS drain_seconds,
                   wd.binding, wd.resets_at
            FROM checked i
            JOIN fairlane.queues q ON q.id = i.queue_id
            JOIN fairlane.destinations d ON d.id = q.destination_id
            JOIN fairlane.tenants t ON t.id = q.tenant_id
            JOIN fairlane.senders sd ON sd.id = q.sender_id
            LEFT JOIN LATERAL (
                SELECT x.* FROM fairlane.window_drain_v1(q.destination_id, q.sender_id, i.portion, i.backlog, now()) x
                WHERE windows_exist
            ) wd ON true
            WHERE NOT (i.portion > 0)
               OR coalesce(wd.drain_seconds, i.backlog / i.portion) > least(d.max_drain_seconds, i.validity_seconds)
            ORDER BY i.ordinal
        LOOP
            -- the grouped check is conservative; only a row that does not fit is refused
            one := staged[bad.ordinal];
            one.error := ROW(
                'queue_overflow', NULL, NULL,
                CASE WHEN bad.binding IS NULL THEN
                    format('queue %s / %s / %s is full: %s queued segments would take %s s to drain at its portion '
                           'of %s segments/s, more than %s s', bad.tenant, bad.destination, bad.sender, bad.backlog,
                           coalesce(round(bad.drain_seconds::numeric)::text, 'infinite'),
                           round(bad.portion::numeric, 3), bad.limit_seconds)
                ELSE
                    format('queue %s / %s / %s is full: the %s quota cannot take its %s queued segments before it '
                           'frees at %s, so they would take %s s to drain, more than %s s', bad.tenant,
                           bad.destination, bad.sender, bad.binding, bad.backlog,
                           to_char(bad.resets_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                           round(bad.drain_seconds::numeric), bad.limit_seconds)
                END,
                jsonb_build_object(
                    'tenant', bad.tenant, 'destination', bad.destination, 'sender', bad.sender,
                    'queued_segments', bad.backlog, 'portion', bad.portion, 'max_drain_seconds', bad.limit_seconds,
                    -- when a quota window holds the queue back, at its reset
                    'retry_after_seconds',
                    CASE WHEN bad.binding IS NOT NULL
                             THEN greatest(ceil(extract(epoch FROM bad.resets_at - now())), 1)
                         WHEN bad.portion > 0 THEN greatest(ceil(bad.drain_seconds - bad.limit_seconds), 1) END)
                || CASE WHEN bad.binding IS NULL THEN '{}'::jsonb
                        ELSE jsonb_build_object('binding_limit', bad.binding, 'resets_at', bad.resets_at) END
            )::fairlane.row_error_v2;
            IF strict THEN
                PERFORM fairlane.raise_v1((one.error).code, NULL, NULL, (one.error).message,
                                          CASE WHEN row_count > 1 THEN bad.ordinal END, (one.error).details);
            END IF;
            staged[bad.ordinal] := one;
        END LOOP;
    END IF;

    -- A row replaying an earlier row of this call shares that row's fate.
    FOR bad IN
        SELECT r.ordinal, f.error
        FROM unnest(staged) r
        JOIN unnest(staged) f ON f.message_id = r.message_id AND NOT f.replayed
        WHERE r.replayed AND (r.error).code IS NULL AND (f.error).code IS NOT NULL
    LOOP
        one := staged[bad.ordinal];
        one.error := bad.error;
        staged[bad.ordinal] := one;
    END LOOP;

    -- 4. Claim the new idempotency keys (a key older than 24 h is taken over). A key claimed by a
    -- concurrent transaction since the lookup above is a retryable conflict.
    INSERT INTO fairlane.idempotency_keys AS k (tenant_id, key, request_hash, message_id)
    SELECT s.tenant_id, s.idempotency_key, s.request_hash, s.message_id
    FROM unnest(staged) s
    WHERE s.idempotency_key IS NOT NULL AND NOT s.replayed AND (s.error).code IS NULL
    ORDER BY s.tenant_id, s.idempotency_key
    ON CONFLICT (tenant_id, key) DO UPDATE
        SET request_hash = excluded.request_hash, message_id = excluded.message_id, created_at = now()
        WHERE k.created_at <= now() - interval '24 hours';
    GET DIAGNOSTICS claimed_keys = ROW_COUNT;
    SELECT count(*) INTO new_keys
    FROM unnest(staged) s WHERE s.idempotency_key IS NOT NULL AND NOT s.replayed AND (s.error).code IS NULL;
    IF claimed_keys < new_keys THEN
        RAISE EXCEPTION 'an idempotency key of this statement was used concurrently; retry the statement'
            USING ERRCODE = 'serialization_failure';
    END IF;

    -- 5. Write.
    IF scheduled_cap IS NOT NULL THEN  -- the tenants are locked (the cap, above)
        UPDATE fairlane.tenants t
        SET scheduled_count = t.scheduled_count + c.messages
        FROM (
            SELECT s.tenant_id, count(*) AS messages
            FROM unnest(staged) s
            WHERE NOT s.replayed AND (s.error).code IS NULL AND s.send_at > now()
            GROUP BY 1
        ) c
        WHERE t.id = c.tenant_id;
    END IF;
    UPDATE fairlane.queues q
    SET queued_count = q.queued_count + c.messages, queued_segments = q.queued_segments + c.segments
    FROM (
        SELECT queue_of[s.ordinal] AS queue_id, count(*) AS messages, sum(s.segments) AS segments
        FROM unnest(staged) s
        WHERE NOT s.replayed AND (s.error).code IS NULL AND (s.send_at IS NULL OR s.send_at <= now())
        GROUP BY 1
    ) c
    WHERE q.id = c.queue_id;

    INSERT INTO fairlane.messages_live (
        id, tenant_id, queue_id, status, recipient, body, segments, encoding,
        send_at, expires_at, status_callback, idempotency_key, event_count, priority
    )
    SELECT s.message_id, s.tenant_id, queue_of[s.ordinal],
           CASE WHEN s.send_at > now() THEN 'scheduled' ELSE 'queued' END,
           s.recipient, s.body, s.segments, s.encoding,
           s.send_at, s.expires_at, s.status_callback, s.idempotency_key, 1, s.priority
    FROM unnest(staged) s
    WHERE NOT s.replayed AND (s.error).code IS NULL;

    PERFORM fairlane.record_events_v1(ARRAY(
        SELECT ROW(s.message_id, s.tenant_id, CASE WHEN s.send_at > now() THEN 'scheduled' ELSE 'queued' END,
                   clock_timestamp(), NULL, NULL, 1, s.status_callback, s.recipient, queue_of[s.ordinal],
                   s.segments)::fairlane.new_event_v1
        FROM unnest(staged) s
        WHERE NOT s.replayed AND (s.error).code IS NULL
        ORDER BY s.ordinal));

    RETURN QUERY
    SELECT s.ordinal, CASE WHEN (s.error).code IS NULL THEN s.message_id END, s.replayed, s.error
    FROM unnest(staged) s
    ORDER BY s.ordinal;
END
$$;
