-- Queries of the maintenance leader (asyncpg, $n parameters): lease rescue, scheduled promotion, pruning.

-- name: rescue
-- Requeue messages whose lease expired (failing those out of attempts, $1 = max attempts).
SELECT fairlane.rescue_v1($1)

-- name: promote
-- Queue scheduled messages whose time has come.
SELECT fairlane.promote_v1()

-- name: prune_idempotency_keys
-- Forget idempotency keys older than 24 hours.
DELETE FROM fairlane.idempotency_keys WHERE created_at < now() - interval '24 hours'

-- name: prune_callbacks
-- Forget status callbacks delivered or abandoned more than a day ago.
DELETE FROM fairlane.callbacks
WHERE coalesce(delivered_at, abandoned_at) < now() - interval '24 hours'

-- name: try_lead
-- Become the maintenance leader (a session advisory lock on a dedicated connection).
SELECT pg_try_advisory_lock(hashtext('fairlane.maintenance'))
