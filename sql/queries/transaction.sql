-- Statements of the one transaction helper (db/transaction.py; asyncpg).

-- name: durable
-- This transaction commits synchronously: COMMIT returns once its WAL (and all WAL before it) is flushed.
SET LOCAL synchronous_commit = on
