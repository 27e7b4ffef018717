-- Queries of the status callback sender (asyncpg, $n parameters). SPEC §4 "Status callbacks".

-- name: claim_callbacks
-- Lease up to $1 due callbacks for $2 seconds (one more attempt each) with their URL, secret and JSON body.
WITH due AS (
    -- the oldest due rows through callbacks_due_idx; rows another sender holds are skipped
    SELECT c.event_id
    FROM fairlane.callbacks c
    WHERE c.delivered_at IS NULL AND c.abandoned_at IS NULL AND c.next_attempt_at <= now()
    ORDER BY c.next_attempt_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
),
leased AS (
    -- the lease: not due again until the post and its recording are long over
    UPDATE fairlane.callbacks c
    SET attempts = c.attempts + 1, next_attempt_at = now() + make_interval(secs => $2::float8)
    FROM due
    WHERE c.event_id = due.event_id
    RETURNING c.event_id, c.tenant_id, c.url, c.attempts, c.created_at, c.payload
)
-- the body was built with the event (fairlane.record_events_v1): every attempt sends the same bytes
SELECT l.event_id, l.url, l.attempts, l.created_at, t.signing_secret, l.payload
FROM leased l
LEFT JOIN fairlane.tenants t ON t.id = l.tenant_id
ORDER BY l.event_id

-- name: delivered
-- Mark the callbacks of event ids $1 delivered (a receiver answered 2xx).
UPDATE fairlane.callbacks
SET delivered_at = now()
WHERE event_id = ANY($1::bigint[]) AND delivered_at IS NULL

-- name: retry_later
-- Failed posts: row $1[i] is due again in $2[i] seconds with error $3[i], or abandoned once older than $4 seconds.
UPDATE fairlane.callbacks c
SET last_error = f.error,
    next_attempt_at = CASE WHEN c.created_at > now() - make_interval(secs => $4::float8)
                           THEN now() + make_interval(secs => f.delay) ELSE c.next_attempt_at END,
    abandoned_at = CASE WHEN c.created_at <= now() - make_interval(secs => $4::float8) THEN now() END
FROM unnest($1::bigint[], $2::float8[], $3::text[]) AS f(event_id, delay, error)
WHERE c.event_id = f.event_id AND c.delivered_at IS NULL AND c.abandoned_at IS NULL
RETURNING c.event_id, c.abandoned_at IS NOT NULL AS abandoned
