"""The status callback sender's database calls (asyncpg): claim due callbacks, record the outcomes."""

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from db import queries

_Q = queries.load("callbacks")


@dataclass(frozen=True)
class Callback:
    """One leased callback: what to POST where, and how to sign it."""

    event_id: int
    url: str
    attempts: int
    """Attempts including this one."""
    created_at: dt.datetime
    signing_secret: str | None
    """The tenant's secret ('whsec_...'); None if the tenant no longer exists."""
    payload: str
    """The JSON body, exactly as it is to be signed and sent."""


@dataclass(frozen=True)
class Failure:
    """A post that did not get a 2xx: try again after `delay` seconds."""

    event_id: int
    delay: float
    error: str


async def claim_callbacks(connection: asyncpg.Connection, limit: int, lease_seconds: float) -> list[Callback]:
    rows = await connection.fetch(_Q["claim_callbacks"], limit, lease_seconds)
    return [Callback(**dict(row)) for row in rows]


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
    )
    return sorted(int(row["event_id"]) for row in rows if row["abandoned"])
