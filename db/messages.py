"""The tenant side of the HTTP API (asyncpg): authentication, submission, reading, cancelling, queues.

Messages come back as fairlane.message_details shows them, events and queues as rows (dicts): the API
shows them in service/model/messages.py's shapes."""

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from db import queries
from db.errors import CONNECTION_LOST, FairlaneError, translate

_Q = queries.load("messages")


@dataclass(frozen=True)
class Tenant:
    id: int
    name: str


@dataclass(frozen=True)
class Submitted:
    """One submission's outcome: the message (the original one when replayed), or the error."""

    message: dict[str, Any] | None
    replayed: bool
    error: FairlaneError | None


async def authenticate_digest(connection: asyncpg.Connection, digest: str) -> Tenant | None:
    """The tenant holding the API key whose SHA-256 hex digest is `digest`, unless it was revoked."""
    row = await connection.fetchrow(_Q["authenticate"], digest)
    return Tenant(row["id"], row["name"]) if row else None


def _error(error: dict[str, Any]) -> FairlaneError:
    details = error.get("details") or {}
    return FairlaneError(
        code=error["code"],
        message=error["message"],
        field=error.get("field"),
        value=error.get("value"),
        details=details,
    )


async def submit(connection: asyncpg.Connection, submissions: Sequence[dict[str, Any]]) -> list[Submitted]:
    """Submit messages (dicts with the fields of fairlane.submission_v2), each judged on its own. Raises
    asyncpg.SerializationError when another transaction claimed one of their idempotency keys meanwhile
    (retry: db.transaction.with_retries), and FairlaneError `outcome_unknown` when the connection broke while
    the statement ran: it may have committed (a retry with the same idempotency keys tells)."""
    try:
        rows = await connection.fetch(_Q["submit"], json.dumps(submissions))
    except CONNECTION_LOST as error:
        raise FairlaneError(
            "outcome_unknown",
            "the connection to the database broke after the submission was sent: it may or may not have been "
            "accepted; send it again with the same idempotency key",
            details={"error": type(error).__name__},
        ) from error
    return [
        Submitted(
            message=json.loads(row["message"]) if row["message"] else None,
            replayed=row["replayed"],
            error=_error(json.loads(row["error"])) if row["error"] else None,
        )
        for row in rows
    ]


async def message(connection: asyncpg.Connection, tenant_id: int, message_id: int) -> dict[str, Any] | None:
    value = await connection.fetchval(_Q["message"], tenant_id, message_id)
    return json.loads(value) if value else None


async def by_idempotency_key(connection: asyncpg.Connection, tenant_id: int, key: str) -> dict[str, Any] | None:
    """Tenant's message submitted with idempotency key `key` within the last 24 hours (while the key is kept)."""
    value = await connection.fetchval(_Q["by_idempotency_key"], tenant_id, key)
    return json.loads(value) if value else None


async def messages(
    connection: asyncpg.Connection,
    tenant_id: int,
    *,
    status: str | None,
    destination: str | None,
    limit: int,
    before_id: int,
) -> list[dict[str, Any]]:
    rows = await connection.fetch(_Q["messages"], tenant_id, status, destination, limit, before_id)
    return [json.loads(row["message"]) for row in rows]


async def events(connection: asyncpg.Connection, tenant_id: int, message_id: int) -> list[dict[str, Any]]:
    """A message's events, oldest first: id, status, at, detail."""
    rows = await connection.fetch(_Q["events"], tenant_id, message_id)
    return [{**row, "detail": json.loads(row["detail"]) if row["detail"] else None} for row in rows]


async def cancel(connection: asyncpg.Connection, tenant_id: int, message_id: int) -> str:
    with translate():
        return str(await connection.fetchval(_Q["cancel"], tenant_id, message_id))


async def queues(connection: asyncpg.Connection, tenant_id: int) -> list[dict[str, Any]]:
    """A tenant's queues as fairlane.queue_state shows them."""
    return [dict(row) for row in await connection.fetch(_Q["queues"], tenant_id)]


async def usage(connection: asyncpg.Connection, tenant: str, first: dt.date, last: dt.date) -> list[dict[str, Any]]:
    """A tenant's usage per UTC day from `first` to `last` (inclusive) as fairlane.usage_daily counts it."""
    return [dict(row) for row in await connection.fetch(_Q["usage"], tenant, first, last)]
