"""Which destinations a dispatcher process claims for (docs/decisions/0018).

A destination is claimed by a few claimers only, however many dispatcher processes run: one per
`CLAIMER_RATE` segments per second of its quota, at least one, at most eight (its bucket's slices). Each
claimer holds a lease: a session advisory lock (destination, claimer number) on its process's lease
connection, so a lease is held by one process at a time and ends with the process (or its connection). The
leases of all destinations are shared evenly: a process holds at most its share (all leases / dispatcher
processes, counted by the lease connections' application name) and takes free ones up to it, starting with
destinations it does not serve yet, so a destination's claimers land in different processes. Claiming this
way does not grow with the number of processes: the others neither claim nor poll that destination."""

import logging
import math
import os
from dataclasses import dataclass

import asyncpg

from db import dispatch
from db.dispatch import Destination
from service.workers.loop import DATABASE_ERRORS, Outage

logger = logging.getLogger(__name__)
APPLICATION_NAME = "fairlane dispatcher"
CLAIMER_RATE = 2000.0
"""Segments per second one claimer serves before its destination gets another."""


@dataclass(frozen=True)
class Lease:
    destination_id: int
    claimer: int


def claimers(destination: Destination) -> int:
    """How many claimers serve a destination: one per CLAIMER_RATE of its quota, 1 to 8."""
    return max(1, min(8, math.ceil(destination.rate / CLAIMER_RATE)))


class Leases:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.held: set[Lease] = set()
        self._connection: asyncpg.Connection | None = None
        self._outage = Outage("leases")

    async def close(self) -> None:
        if self._connection is not None and not self._connection.is_closed():
            await self._connection.close()
        self._connection = None
        self.held.clear()

    async def rebalance(self, destinations: list[Destination]) -> tuple[set[Lease], set[Lease]]:
        """Give back leases of destinations gone or over this process's share, take free ones up to it.
        Returns (taken, given back). A lost lease connection loses every lease: all are given back."""
        if self._connection is None or self._connection.is_closed():
            lost = set(self.held)
            self.held.clear()
            try:
                self._connection = await asyncpg.connect(
                    self.dsn, server_settings={"application_name": APPLICATION_NAME}
                )
            except DATABASE_ERRORS as error:
                self._outage.failed(error)  # logged once per outage
                self._connection = None
                return set(), lost
            self._outage.succeeded()
            if lost:
                logger.warning("leases lost", extra={"leases": len(lost)})
            return await self._rebalance(destinations, lost)
        return await self._rebalance(destinations, set())

    async def _rebalance(self, destinations: list[Destination], lost: set[Lease]) -> tuple[set[Lease], set[Lease]]:
        assert self._connection is not None
        wanted = [Lease(d.id, i) for d in destinations for i in range(claimers(d))]
        processes = max(1, await dispatch.dispatchers(self._connection, APPLICATION_NAME))
        share = math.ceil(len(wanted) / processes)
        given_back = set(lost)
        for lease in sorted(self.held - set(wanted), key=_order) + sorted(self.held, key=_order)[share:]:
            if lease in self.held:
                await dispatch.give_back_lease(self._connection, lease.destination_id, lease.claimer)
                self.held.discard(lease)
                given_back.add(lease)
        taken: set[Lease] = set()
        served = {lease.destination_id for lease in self.held}
        # first claimers first, then destinations this process does not serve yet; a different start per process
        offset = os.getpid()
        candidates = sorted(
            (lease for lease in wanted if lease not in self.held),
            key=lambda lease: (lease.claimer, lease.destination_id in served, (lease.destination_id + offset) % 997),
        )
        for lease in candidates:
            if len(self.held) >= share:
                break
            if await dispatch.take_lease(self._connection, lease.destination_id, lease.claimer):
                self.held.add(lease)
                taken.add(lease)
        return taken, given_back


def _order(lease: Lease) -> tuple[int, int]:
    """Which leases a process keeps first: first claimers, then by destination."""
    return (lease.claimer, lease.destination_id)
