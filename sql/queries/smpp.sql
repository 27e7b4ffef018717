-- Queries of the smpp gateway (asyncpg, $n parameters): its settings, the binds' slots, parts and receipts.
-- Advisory locks of two keys: 1397575748 ('SMPD') for the processes that want binds of a gateway, 1397575746
-- ('SMPB') for its bind slots (gateway id * 64 + slot).

-- name: gateway
-- An smpp gateway's id and session settings (JSON text, password included), by name.
SELECT id, smpp::text AS smpp FROM fairlane.gateways WHERE name = $1 AND kind = 'smpp'

-- name: want_binds
-- This process wants binds of gateway $1 while its session lasts (a shared advisory lock: the others count it).
SELECT pg_advisory_lock_shared(1397575748, $1::integer)

-- name: wanting_processes
-- How many processes want binds of gateway $1 (sessions holding its shared demand lock).
SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND classid = 1397575748::oid AND objid = $1::integer::oid AND objsubid = 2 AND granted

-- name: take_slot
-- Take bind slot $2 of gateway $1 while this session lasts (a session advisory lock); false when another has it.
SELECT pg_try_advisory_lock(1397575746, ($1 * 64 + $2)::integer)

-- name: give_back_slot
-- Give bind slot $2 of gateway $1 back (its bind has ended).
SELECT pg_advisory_unlock(1397575746, ($1 * 64 + $2)::integer)

-- name: sent_parts
-- Parts of message $2 (split in $3) gateway $1 sent: each one's carrier id, of its latest send (settle_parts_v1).
SELECT DISTINCT ON (part) part, provider_id FROM fairlane.message_parts
WHERE gateway_id = $1 AND message_id = $2 AND parts = $3
ORDER BY part, created_at DESC, provider_id DESC

-- name: record_parts
-- The parts the carrier accepted: messages $2, part numbers $3 of $4, the carrier's ids $5, of gateway $1.
SELECT fairlane.record_parts_v1($1, $2, $3, $4, $5)

-- name: part_receipts
-- Parts' delivery receipts: gateway $1, the carrier's ids $2, delivered | undelivered $3, error codes $4.
SELECT fairlane.part_receipts_v1($1, $2, $3, $4)
