"""The maintenance leader's database calls (asyncpg): leadership, lease rescue, scheduled promotion, the
expiry sweeper, partitions and retention, pruning. One process at a time holds the leadership (a session
advisory lock on its own connection); each call does a bounded amount of work."""

import asyncpg

from db import queries

_Q = queries.load("maintenance")


async def try_lead(connection: asyncpg.Connection) -> bool:
    return bool(await connection.fetchval(_Q["try_lead"]))


async def rescue(connection: asyncpg.Connection, max_attempts: int) -> int:
    """Requeue messages whose lease expired (failing those out of attempts); returns how many."""
    return int(await connection.fetchval(_Q["rescue"], max_attempts))


async def promote(connection: asyncpg.Connection) -> int:
    """Queue scheduled messages whose time has come; returns how many."""
    return int(await connection.fetchval(_Q["promote"]))


async def expire(connection: asyncpg.Connection) -> int:
    """Expire queued and scheduled messages past their validity; returns how many."""
    return int(await connection.fetchval(_Q["expire"]))


async def make_history_partition(connection: asyncpg.Connection) -> bool:
    """Make the next partition of finished messages and events if one is due (each call its own transaction,
    so its locks last a moment); whether it made one."""
    return bool(await connection.fetchval(_Q["make_history_partition"]))


async def drop_history_partition(connection: asyncpg.Connection) -> bool:
    """Drop the oldest partition of finished messages and events past the retention; whether it dropped one."""
    return bool(await connection.fetchval(_Q["drop_history_partition"]))


async def prune(connection: asyncpg.Connection) -> int:
    """Forget idempotency keys and finished callbacks older than a day (bounded); returns how many rows."""
    return int(await connection.fetchval(_Q["prune"]))


async def settle_waiting_parts(connection: asyncpg.Connection) -> int:
    """Apply the receipts of SMPP messages whose every part's receipt came while they were live; how many."""
    return int(await connection.fetchval(_Q["settle_waiting_parts"]))


async def prune_message_parts(connection: asyncpg.Connection) -> int:
    """Forget the parts of SMPP messages older than the retention (bounded); returns how many rows."""
    return int(await connection.fetchval(_Q["prune_message_parts"]))
