"""The dispatcher's database calls (asyncpg): the destinations to serve, claim, complete, throttle."""

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from db import queries

_Q = queries.load("dispatch")


@dataclass(frozen=True)
class Destination:
    id: int
    code: str
    rate: float
    burst: int
    gateway: str
    kind: str
    url: str
    timeout_seconds: float
    max_in_flight: int
    send_slot_seconds: float
    """How long a claimed message may take to reach the gateway (fairlane.send_slot_v1)."""


@dataclass(frozen=True)
class Claimed:
    message_id: int
    claim_id: int
    tenant: str
    destination: str
    sender: str
    recipient: str
    body: str
    segments: int
    expires_at: dt.datetime
    attempts: int


@dataclass(frozen=True)
class Answer:
    """What a gateway said about one message."""

    message_id: int
    outcome: str  # sent | failed | retry | throttled | release
    provider_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    delay: float | None = None


async def destinations(connection: asyncpg.Connection) -> list[Destination]:
    return [Destination(**dict(row)) for row in await connection.fetch(_Q["destinations"])]


@dataclass(frozen=True)
class Claim:
    messages: list[Claimed]
    ready_in: float | None
    """Seconds until the next claim may find tokens; None: nothing is waiting to go."""
    took: float
    """Seconds the claim ran in the database."""
    waits: list[float]
    """Seconds each message waited from acceptance until the claim."""


async def claim(connection: asyncpg.Connection, destination_id: int, limit: int, lease_seconds: float) -> Claim:
    """Lease up to `limit` messages of a destination."""
    row = await connection.fetchrow(_Q["claim"], destination_id, limit, lease_seconds)
    assert row is not None
    messages = [Claimed(**dict(message)) for message in row["messages"] or ()]
    waits = list(row["waits"])
    if len(waits) < len(messages):
        # a message committed after the statement's snapshot but before the claim's own queries (which take
        # snapshots of their own) is claimed yet unseen by the statement's join: ask again for all of them
        waits = list(await connection.fetchval(_Q["waits"], [m.message_id for m in messages]))
    return Claim(messages, row["ready_in"], row["took"], waits)


async def complete(connection: asyncpg.Connection, claim_id: int, answers: Sequence[Answer], max_attempts: int) -> int:
    result = await connection.fetchval(
        _Q["complete"],
        claim_id,
        [a.message_id for a in answers],
        [a.outcome for a in answers],
        [a.provider_id for a in answers],
        [a.error_code for a in answers],
        [a.error_message for a in answers],
        [a.delay for a in answers],
        max_attempts,
    )
    return int(result)


async def leased(connection: asyncpg.Connection, claim_id: int, message_ids: Sequence[int]) -> int:
    """How many of `message_ids` are still leased under `claim_id`: none once the claim's completion landed (or
    its lease was rescued)."""
    return int(await connection.fetchval(_Q["leased"], claim_id, list(message_ids)))


async def throttle(connection: asyncpg.Connection, destination_id: int) -> float:
    return float(await connection.fetchval(_Q["throttle"], destination_id))


async def return_tokens(connection: asyncpg.Connection, destination_id: int, segments: int) -> None:
    """Give the destination's bucket back the tokens of segments claimed but never sent."""
    await connection.execute(_Q["return_tokens"], destination_id, segments)


async def take_lease(connection: asyncpg.Connection, destination_id: int, slot: int) -> bool:
    """Claim for a destination as its claimer `slot`, while this session lasts; False when another has it."""
    return bool(await connection.fetchval(_Q["take_lease"], destination_id, slot))


async def give_back_lease(connection: asyncpg.Connection, destination_id: int, slot: int) -> None:
    await connection.fetchval(_Q["give_back_lease"], destination_id, slot)


async def dispatchers(connection: asyncpg.Connection, application_name: str) -> int:
    """How many sessions named `application_name` (one lease connection per dispatcher process) are open."""
    return int(await connection.fetchval(_Q["dispatchers"], application_name))
