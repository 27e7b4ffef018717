"""What operators read: readiness and gauges for the API's /metrics (asyncpg), the tables of `fairlane
stats` and the dashboard's reading (psycopg), all from the inspection views."""

from dataclasses import dataclass
from typing import Any

import asyncpg
import psycopg
from psycopg.rows import dict_row

from db import queries

_Q = queries.load("reports")


async def revision(connection: asyncpg.Connection) -> str | None:
    """The schema's Alembic revision; None when the database was never migrated."""
    try:
        value = await connection.fetchval(_Q["revision"])
    except asyncpg.UndefinedTableError:
        return None
    return str(value) if value is not None else None


async def queue_gauges(connection: asyncpg.Connection) -> list[dict[str, Any]]:
    return [dict(row) for row in await connection.fetch(_Q["queue_gauges"])]


async def destination_gauges(connection: asyncpg.Connection) -> list[dict[str, Any]]:
    return [dict(row) for row in await connection.fetch(_Q["destination_gauges"])]


@dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]


def _table(connection: psycopg.Connection[Any], title: str, query: str) -> Table:
    cursor = connection.execute(_Q[query])
    columns = tuple(column.name for column in cursor.description or ())
    return Table(title, columns, tuple(tuple(row) for row in cursor.fetchall()))


def tables(connection: psycopg.Connection[Any]) -> list[Table]:
    """The destination and queue tables of `fairlane stats`."""
    return [_table(connection, "destinations", "stats_destinations"), _table(connection, "queues", "stats_queues")]


def storage(connection: psycopg.Connection[Any]) -> Table:
    """`fairlane stats --storage`: every fairlane table's and index's size, live and dead rows, last vacuum."""
    return _table(connection, "storage", "storage")


def dashboard(connection: psycopg.Connection[Any]) -> dict[str, Any]:
    """What the dashboard shows, read in one snapshot: `at`, and every destination's load (a row of
    fairlane.destination_load) with its active queues (rows of fairlane.queue_scores) under `queues`."""
    previous = connection.isolation_level, connection.read_only
    connection.isolation_level, connection.read_only = psycopg.IsolationLevel.REPEATABLE_READ, True
    try:
        with connection.transaction(), connection.cursor(row_factory=dict_row) as cursor:
            loads = cursor.execute(_Q["dashboard_destinations"]).fetchall()
            queues = cursor.execute(_Q["dashboard_queues"]).fetchall()
    finally:
        connection.isolation_level, connection.read_only = previous
    by_destination: dict[str, list[dict[str, Any]]] = {}
    for queue in queues:
        by_destination.setdefault(queue["destination"], []).append(queue)
    destinations = [
        {**{k: v for k, v in load.items() if k != "at"}, "queues": by_destination.get(load["destination"], [])}
        for load in loads
        if load["destination"] is not None
    ]
    return {"at": loads[0]["at"], "destinations": destinations}
