"""Readiness: is the database reachable, and at which schema revision."""

from typing import Any

import asyncpg

from db import queries


async def revision(connection: asyncpg.Connection) -> str | None:
    """The schema's Alembic revision; None when the database was never migrated."""
    try:
        value = await connection.fetchval(queries.load("health")["revision"])
    except asyncpg.UndefinedTableError:
        return None
    return str(value) if value is not None else None


async def queue_gauges(connection: asyncpg.Connection) -> list[dict[str, Any]]:
    return [dict(row) for row in await connection.fetch(queries.load("health")["queue_gauges"])]


async def destination_gauges(connection: asyncpg.Connection) -> list[dict[str, Any]]:
    return [dict(row) for row in await connection.fetch(queries.load("health")["destination_gauges"])]
