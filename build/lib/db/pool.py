"""The one way services open an asyncpg pool.

Pooled connections never keep session state (no advisory locks, cursors, LISTEN or SET: the dispatcher's
leader lock and LISTEN live on their own connections), so a connection goes back to the pool without
asyncpg's reset query: one round trip fewer per use."""

from typing import Any

import asyncpg


class StatelessConnection(asyncpg.Connection):  # type: ignore[misc]
    def get_reset_query(self) -> str:
        return ""


async def create(dsn: str, *, min_size: int, max_size: int, server_settings: dict[str, str] | None = None) -> Any:
    """A pool of `StatelessConnection`s (open transactions are still rolled back on release)."""
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        server_settings=server_settings,
        connection_class=StatelessConnection,
    )
