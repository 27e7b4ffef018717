"""The one way services open an asyncpg pool.

Pooled connections never keep session state (no advisory locks, cursors, LISTEN or SET: the dispatcher's
leader lock and LISTEN live on their own connections), so a connection goes back to the pool without
asyncpg's reset query: one round trip fewer per use.

Every pool bounds what it waits for (docs/decisions/0017): a statement runs at most `statement_timeout`
seconds (PostgreSQL's statement_timeout on each connection), and taking a connection from the pool waits at
most `acquire_timeout` seconds (TimeoutError, which the API answers with 503 `unavailable`), so a slow
database or a burst of requests queues work for a bounded time instead of piling it up."""

from typing import Any

import asyncpg
from asyncpg.pool import Pool

STATEMENT_TIMEOUT = 30.0
ACQUIRE_TIMEOUT = 10.0
DURABLE = {"synchronous_commit": "on"}
"""Server settings of a pool whose commits must be on disk when they return, whatever the server's default
(the API's submissions and receipts, the callback sender's claims: docs/decisions/0019)."""


class StatelessConnection(asyncpg.Connection):  # type: ignore[misc]
    def get_reset_query(self) -> str:
        return ""


class BoundedPool(Pool):  # type: ignore[misc]
    """A pool whose `acquire` waits at most `acquire_timeout` seconds unless told otherwise."""

    __slots__ = ("_acquire_timeout",)

    def __init__(self, *args: Any, acquire_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._acquire_timeout = acquire_timeout

    def acquire(self, *, timeout: float | None = None) -> Any:
        return super().acquire(timeout=self._acquire_timeout if timeout is None else timeout)


async def create(
    dsn: str,
    *,
    min_size: int,
    max_size: int,
    server_settings: dict[str, str] | None = None,
    statement_timeout: float = STATEMENT_TIMEOUT,
    acquire_timeout: float = ACQUIRE_TIMEOUT,
) -> Any:
    """A pool of `StatelessConnection`s (open transactions are still rolled back on release), each statement
    limited to `statement_timeout` seconds, each acquire to `acquire_timeout`."""
    settings = {"statement_timeout": f"{int(statement_timeout * 1000)}ms", **(server_settings or {})}
    return await BoundedPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        max_queries=50000,
        max_inactive_connection_lifetime=300.0,
        setup=None,
        init=None,
        loop=None,
        connection_class=StatelessConnection,
        record_class=asyncpg.Record,
        server_settings=settings,
        acquire_timeout=acquire_timeout,
    )
