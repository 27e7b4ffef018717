"""What `fairlane run` reads of the configuration: gateways (to start simulators) and tenants."""

from dataclasses import dataclass
from typing import Any

import psycopg

from db import queries


@dataclass(frozen=True)
class Gateway:
    name: str
    kind: str
    url: str
    receipts_token: str | None


def gateways(connection: psycopg.Connection[Any]) -> list[Gateway]:
    return [Gateway(*row) for row in connection.execute(queries.load("overview")["gateways"])]


def tenants(connection: psycopg.Connection[Any]) -> list[str]:
    """Tenant names, `demo` first when it exists."""
    return [row[0] for row in connection.execute(queries.load("overview")["tenants"])]
