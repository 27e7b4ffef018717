"""Operator tables for `fairlane stats`, read from the inspection views."""

from dataclasses import dataclass
from typing import Any

import psycopg

from db import queries


@dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]


def read(connection: psycopg.Connection[Any]) -> list[Table]:
    q = queries.load("stats")
    tables = []
    for title, name in (("destinations", "destinations"), ("queues", "queues")):
        cursor = connection.execute(q[name])
        columns = tuple(column.name for column in cursor.description or ())
        tables.append(Table(title, columns, tuple(tuple(row) for row in cursor.fetchall())))
    return tables
