"""The status callback sender's database calls (asyncpg): claim due callbacks fairly across tenants, record the
outcomes, postpone an endpoint's callbacks while its circuit is open, read where callbacks may go."""

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import asyncpg

from db import queries

_Q = queries.load("callbacks")


@dataclass(frozen=True)
class Callback:
    """One leased callback: what to POST where, and how to sign it."""

    event_id: int
    tenant_id: int
    url: str
    attempts: int
    """Attempts including this one."""
    created_at: dt.datetime
    signing_secrets: tuple[str, ...]
    """The tenant's secret ('whsec_...') and, during a rotation's grace period, the one before it; empty if the
    tenant no longer exists."""
    payload: str
    """The JSON body, exactly as it is to be signed and sent."""


@dataclass(frozen=True)
class Failure:
    """A post that did not get a 2xx: try again after `delay` seconds. One not `attempted` (skipped while its
    endpoint's circuit was open) gives back the attempt its lease counted."""

    event_id: int
    delay: float
    error: str
    attempted: bool = True


@dataclass(frozen=True)
class Policy:
    """Where callbacks may go beyond public https URLs (settings.callback_allow_networks, callback_allow_http)."""

    allow_networks: tuple[str, ...]
    allow_http: bool


async def claim_callbacks(
    connection: asyncpg.Connection,
    limit: int,
    lease_seconds: float,
    per_tenant: int | None = None,
    in_flight: Mapping[int, int] | None = None,
) -> list[Callback]:
    """Lease up to `limit` due callbacks, tenants in turn (each tenant's oldest first), a tenant at most
    `per_tenant` in flight counting the `in_flight` it has already (tenant id -> callbacks)."""
    busy = dict(in_flight or {})
    rows = await connection.fetch(
        _Q["claim_callbacks"],
        limit,
        lease_seconds,
        limit if per_tenant is None else per_tenant,
        list(busy),
        list(busy.values()),
    )
    return [
        Callback(
            event_id=row["event_id"],
            tenant_id=row["tenant_id"],
            url=row["url"],
            attempts=row["attempts"],
            created_at=row["created_at"],
            signing_secrets=tuple(row["signing_secrets"]),
            payload=row["payload"],
        )
        for row in rows
    ]


async def delivered(connection: asyncpg.Connection, event_ids: Sequence[int]) -> None:
    await connection.execute(_Q["delivered"], list(event_ids))


async def retry_later(connection: asyncpg.Connection, failures: Sequence[Failure], max_age_seconds: float) -> list[int]:
    """Schedule the next attempt of each failed callback; returns the event ids of those abandoned instead
    (created more than `max_age_seconds` ago)."""
    rows = await connection.fetch(
        _Q["retry_later"],
        [f.event_id for f in failures],
        [f.delay for f in failures],
        [f.error for f in failures],
        max_age_seconds,
        [f.attempted for f in failures],
    )
    return sorted(int(row["event_id"]) for row in rows if row["abandoned"])


async def postpone_endpoint(connection: asyncpg.Connection, tenant_id: int, endpoint: str, seconds: float) -> int:
    """A tenant's pending callbacks to `endpoint` (lower-case `scheme://authority`) due within `seconds` wait
    until then (its circuit is open); returns how many."""
    status = await connection.execute(_Q["postpone_endpoint"], tenant_id, endpoint, seconds)
    return int(status.rsplit(" ", 1)[-1])


async def policy(connection: asyncpg.Connection) -> Policy:
    """Where callbacks may go, read as `fairlane apply` reads it (a query without parameters: either driver)."""
    row = await connection.fetchrow(queries.load("configuration")["callbacks"])
    if row is None:
        return Policy((), False)
    return Policy(tuple(row["allow_networks"]), bool(row["allow_http"]))
