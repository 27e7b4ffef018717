"""The maintenance leader's database calls (asyncpg): leadership, lease rescue, scheduled promotion,
pruning. One process at a time holds the leadership (a session advisory lock on its own connection)."""

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


async def prune(connection: asyncpg.Connection) -> None:
    """Forget idempotency keys and finished status callbacks older than a day."""
    await connection.execute(_Q["prune_idempotency_keys"])
    await connection.execute(_Q["prune_callbacks"])
