"""The one retry helper around SQL: serialization failures, deadlocks and lock timeouts are retried with
bounded, jittered exponential backoff. A lost connection (or a server that is away) is raised at once, since
the transaction may have committed before the answer was lost, unless the caller says its work is
idempotent (`idempotent_until`): then it is tried again, on a new connection, until that time
(docs/decisions/0019)."""

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from db import queries
from db.errors import CONNECTION_LOST

logger = logging.getLogger(__name__)
T = TypeVar("T")
_Q = queries.load("transaction")
RETRYABLE = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError, asyncpg.LockNotAvailableError)
# what an idempotent transaction is tried again after: a lost connection, a server away, a statement timeout
RECONNECTABLE = (*CONNECTION_LOST, TimeoutError, asyncpg.QueryCanceledError)
MAX_RECONNECT_DELAY = 1.0


async def with_retries(
    pool: asyncpg.Pool,
    work: Callable[[asyncpg.Connection], Awaitable[T]],
    attempts: int = 5,
    *,
    one_statement: bool = False,
    durable: bool = False,
    idempotent_until: float | None = None,
) -> T:
    """Run `work` in a transaction on a pooled connection, retrying transient failures. When `work` runs
    one statement, that statement is its own transaction: no BEGIN and COMMIT round trips, and its locks
    are released inside the server as soon as it ends. `durable`: the transaction commits synchronously
    (its commit, and every commit before it, is on disk when this returns) whatever the connection's
    `synchronous_commit`. `idempotent_until` (a `time.monotonic()` time): `work` may run again after it
    committed (it changes nothing the second time), so a lost connection is retried until then."""
    attempt = 0
    reconnects = 0
    while True:
        try:
            async with pool.acquire() as connection:
                if one_statement:
                    assert not durable, "a single statement has no transaction to commit durably"
                    return await work(connection)
                async with connection.transaction():
                    if durable:
                        await connection.execute(_Q["durable"])
                    return await work(connection)
        except RETRYABLE as error:
            attempt += 1
            if attempt == attempts:
                raise
            delay = 0.05 * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
            logger.warning("transaction retried", extra={"attempt": attempt, "error": type(error).__name__})
            await asyncio.sleep(delay)
        except RECONNECTABLE as error:
            if idempotent_until is None or time.monotonic() >= idempotent_until:
                raise
            reconnects += 1
            delay = min(MAX_RECONNECT_DELAY, 0.05 * 2 ** min(reconnects - 1, 10)) * random.uniform(0.5, 1.0)
            delay = min(delay, max(idempotent_until - time.monotonic(), 0.0))
            logger.warning(
                "transaction retried", extra={"attempt": reconnects, "error": type(error).__name__, "reconnect": True}
            )
            await asyncio.sleep(delay)
