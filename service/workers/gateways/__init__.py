"""Gateways: what forwards a claimed message to a destination's carrier and says what it answered. One
kind per module (http: the `http` gateway protocol, also spoken by the carrier simulator; smpp: SMPP 3.4
binds)."""

from collections.abc import Callable
from typing import Protocol

import aiohttp
import asyncpg

from db.dispatch import Answer, Claimed, Destination
from service.workers.gateways.http import HttpGateway
from service.workers.gateways.smpp import SmppGateway


class Gateway(Protocol):
    async def start(self, dsn: str, pool: asyncpg.Pool, serving: Callable[[], bool]) -> bool:
        """Get ready to send (an smpp gateway: hold a bind); False when `serving()` turned false first."""
        ...

    async def send(self, message: Claimed, send_by: float) -> Answer:
        """Forward one message and say what the carrier answered. `send_by` (time.monotonic()) ends the
        message's send slot: a gateway that cannot start sending it by then (an smpp gateway: no window room)
        answers `release` (back to its queue, no attempt used)."""
        ...

    async def close(self) -> None:
        """After the last send (an smpp gateway: unbind when no other destination of this process uses it)."""
        ...


def for_destination(destination: Destination, session: aiohttp.ClientSession) -> Gateway | None:
    """The gateway that serves a destination; None for a kind this process does not serve."""
    if destination.kind in ("http", "simulator"):
        return HttpGateway(session, destination.url, destination.timeout_seconds)
    if destination.kind == "smpp":
        return SmppGateway(destination)
    return None
