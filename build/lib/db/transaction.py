"""The one retry helper around SQL: serialization failures, deadlocks and lock timeouts are retried with
bounded, jittered exponential backoff; anything else (a lost connection included) is raised at once."""

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

logger = logging.getLogger(__name__)
T = TypeVar("T")
# never a lost connection: the transaction may have committed before the answer was lost
RETRYABLE = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError, asyncpg.LockNotAvailableError)


async def with_retries(
    pool: asyncpg.Pool,
    work: Callable[[asyncpg.Connection], Awaitable[T]],
    attempts: int = 5,
    *,
    one_statement: bool = False,
) -> T:
    """Run `work` in a transaction on a pooled connection, retrying transient failures. When `work` runs
    one statement, that statement is its own transaction: no BEGIN and COMMIT round trips, and its locks
    are released inside the server as soon as it ends."""
    for attempt in range(attempts):
        try:
            async with pool.acquire() as connection:
                if one_statement:
                    return await work(connection)
                async with connection.transaction():
                    return await work(connection)
        except RETRYABLE as error:
            if attempt == attempts - 1:
                raise
            delay = 0.05 * 2**attempt * random.uniform(0.5, 1.5)
            logger.warning("transaction retried", extra={"attempt": attempt + 1, "error": type(error).__name__})
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")
