"""The smpp gateway's database calls (asyncpg): its settings, bind slots, the parts of messages sent and
their delivery receipts (docs/decisions/0016).

Bind slots are session advisory locks on the gateway's own connection (never a pooled one): a bind holds its
slot while it is up, so at most `binds` binds of a gateway exist however many processes run, and a process's
slots go with it when it dies."""

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from db import queries
from db.errors import translate

_Q = queries.load("smpp")


@dataclass(frozen=True)
class SmppGateway:
    id: int
    settings: dict[str, Any] = field(repr=False)
    """The session settings as configured (service/model/configuration.py), password included."""


@dataclass(frozen=True)
class Receipt:
    provider_id: str
    status: str
    """delivered | undelivered"""
    error_code: str | None


@dataclass(frozen=True)
class Part:
    message_id: int
    part: int
    parts: int
    provider_id: str


async def gateway(connection: asyncpg.Connection, name: str) -> SmppGateway | None:
    """An smpp gateway by name; None when there is none (or it has no settings)."""
    row = await connection.fetchrow(_Q["gateway"], name)
    if row is None or row["smpp"] is None:
        return None
    return SmppGateway(row["id"], json.loads(row["smpp"]))


async def want_binds(connection: asyncpg.Connection, gateway_id: int) -> None:
    """Count this session among the processes that want binds of the gateway (until it ends)."""
    await connection.execute(_Q["want_binds"], gateway_id)


async def wanting_processes(connection: asyncpg.Connection, gateway_id: int) -> int:
    return int(await connection.fetchval(_Q["wanting_processes"], gateway_id))


async def take_slot(connection: asyncpg.Connection, gateway_id: int, slot: int) -> bool:
    return bool(await connection.fetchval(_Q["take_slot"], gateway_id, slot))


async def give_back_slot(connection: asyncpg.Connection, gateway_id: int, slot: int) -> None:
    await connection.fetchval(_Q["give_back_slot"], gateway_id, slot)


async def sent_parts(connection: asyncpg.Connection, gateway_id: int, message_id: int, parts: int) -> dict[int, str]:
    """The parts of a message (split in `parts`) the carrier accepted before: part number -> its id (the latest
    send's, as settle_parts_v1 counts it)."""
    rows = await connection.fetch(_Q["sent_parts"], gateway_id, message_id, parts)
    return {row["part"]: row["provider_id"] for row in rows}


async def record_parts(connection: asyncpg.Connection, gateway_id: int, parts: Sequence[Part]) -> int:
    """Keep the carrier's id of every part sent; returns how many messages that settled (their receipts had
    come first)."""
    return int(
        await connection.fetchval(
            _Q["record_parts"],
            gateway_id,
            [p.message_id for p in parts],
            [p.part for p in parts],
            [p.parts for p in parts],
            [p.provider_id for p in parts],
        )
    )


async def part_receipts(connection: asyncpg.Connection, gateway_id: int, receipts: Sequence[Receipt]) -> list[str]:
    """Parts' delivery receipts, each 'duplicate', 'unknown', 'partial', 'waiting' or 'settled'."""
    with translate():
        results = await connection.fetchval(
            _Q["part_receipts"],
            gateway_id,
            [r.provider_id for r in receipts],
            [r.status for r in receipts],
            [r.error_code for r in receipts],
        )
    return [str(result) for result in results]
