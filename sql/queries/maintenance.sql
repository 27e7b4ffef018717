-- Queries of the maintenance leader (asyncpg, $n parameters): lease rescue, scheduled promotion, expiry,
-- partitions and retention, pruning.

-- name: try_lead
-- Become the maintenance leader (a session advisory lock on a dedicated connection).
SELECT pg_try_advisory_lock(hashtext('fairlane.maintenance'))

-- name: rescue
-- Requeue messages whose lease expired (failing those out of attempts, $1 = max attempts).
SELECT fairlane.rescue_v1($1)

-- name: promote
-- Queue scheduled messages whose time has come.
SELECT fairlane.promote_v1()

-- name: expire
-- Expire queued and scheduled messages past their validity.
SELECT fairlane.expire_v1()

-- name: make_history_partition
-- Make the next partition of finished messages and events if one is due; whether it made one.
SELECT fairlane.make_history_partition_v1()

-- name: drop_history_partition
-- Drop the oldest partition of finished messages and events past the retention; whether it dropped one.
SELECT fairlane.drop_history_partition_v1()

-- name: prune
-- Forget idempotency keys and finished callbacks older than a day (bounded).
SELECT fairlane.prune_v1()

-- name: settle_waiting_parts
-- Apply the receipts of messages sent over SMPP whose parts' receipts came before their completion.
SELECT fairlane.settle_waiting_parts_v1()

-- name: prune_message_parts
-- Forget the parts of messages sent over SMPP older than the retention (bounded).
SELECT fairlane.prune_message_parts_v1()
