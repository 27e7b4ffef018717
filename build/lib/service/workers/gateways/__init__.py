"""Gateways: what forwards a claimed message to a destination's carrier and says what it answered. One
kind per module (http: the `http` gateway protocol, also spoken by the carrier simulator)."""

from typing import Protocol

import aiohttp

from db.dispatch import Answer, Claimed, Destination
from service.workers.gateways.http import HttpGateway


class Gateway(Protocol):
    async def send(self, message: Claimed) -> Answer: ...


def for_destination(destination: Destination, session: aiohttp.ClientSession) -> Gateway | None:
    """The gateway that serves a destination; None for a kind this process does not serve."""
    if destination.kind in ("http", "simulator"):
        return HttpGateway(session, destination.url, destination.timeout_seconds)
    return None
