"""Dispatcher: claims each destination's messages in fair order at its quota and forwards them to its
gateway. Stateless; run as many processes as needed against one database.

A destination is claimed only by its claimers (service/workers/leases.py: one per 2,000 segments/s of its quota,
spread over the processes), each with its own loop (service/workers/loop.py): claim a batch (`fairlane.claim_v4`:
fair order, levels, the quota and its windows taken inside the claim), send every message to the gateway
concurrently (at most the gateway's `max_in_flight`), record the answers (`fairlane.complete_v1`). The claim says
when the bucket will hold tokens again, and the loop waits until then; an idle loop waits for a NOTIFY on
`fairlane_ready`. A message is sent within its slot (the destination's `send_slot_seconds` from its claim) or not
at all: after a stall it goes back to its queue and its tokens back to the bucket, so late sends never bunch at the
carrier (docs/decisions/0018). One way to start (`run`), one to stop (`stop`, also on SIGTERM/SIGINT): stop
claiming, give the leases back, let in-flight sends finish for up to a grace period, release what is left back to
its queue, exit. Maintenance (service/workers/maintenance.py) runs in every dispatcher process, on one at a time.
"""

import asyncio
import logging
import math
import os
import time
from dataclasses import dataclass

import aiohttp
import asyncpg

from db import dispatch
from db import pool as db_pool
from db.dispatch import Answer, Claimed, Destination
from db.transaction import with_retries
from service.workers.gateways import Gateway, for_destination
from service.workers.gateways.backoff import retry_delay
from service.workers.leases import Lease, Leases
from service.workers.loop import DATABASE_ERRORS, BatchLoop, Listener, Outage, wait
from service.workers.maintenance import Maintenance
from service.workers.metrics import DispatchMetrics

logger = logging.getLogger(__name__)
NOTIFY_CHANNEL = "fairlane_ready"


@dataclass(frozen=True)
class DispatchSettings:
    batch_size: int = 100
    lease_seconds: float = 60.0
    max_attempts: int = 5
    grace_seconds: float = 10.0
    poll_seconds: float = 0.5
    leases_seconds: float = 1.0
    """How often leases are rebalanced (a dead process's destinations are taken over within this long)."""
    destinations_refresh_seconds: float = 5.0


class DestinationLoop(BatchLoop[Claimed, Answer]):
    """One claimer of one destination: claim, send, record."""

    def __init__(
        self, dispatcher: "Dispatcher", pool: asyncpg.Pool, gateway: Gateway, destination: Destination, lease: Lease
    ) -> None:
        settings = dispatcher.settings
        super().__init__(
            f"{destination.code}#{lease.claimer}",
            batch_size=settings.batch_size,
            max_in_flight=destination.max_in_flight,
            poll_seconds=settings.poll_seconds,
        )
        self.dispatcher = dispatcher
        self.pool = pool
        self.gateway = gateway
        self.destination = destination
        self.lease = lease
        self.lease_seconds = destination.timeout_seconds + settings.lease_seconds
        self._ready_in: float | None = None
        """Seconds until the bucket holds tokens again, as the last claim said (None: nothing waits to go)."""
        self._send_by: dict[int, float] = {}
        """Claim id -> the monotonic time its messages must be on their way by."""
        self._lease_ends: dict[int, float] = {}
        """Claim id -> the monotonic time its lease ends by (its answers are recorded until then)."""

    def keeps_going(self) -> bool:
        """Ends after its current claim when the lease was given back or the destination changed."""
        return self.dispatcher.serves(self.lease, self.destination)

    async def claim(self, room: int) -> list[Claimed]:
        metrics = self.dispatcher.metrics
        async with self.pool.acquire() as connection:
            sent = time.monotonic()
            claim = await dispatch.claim(connection, self.destination.id, room, self.lease_seconds)
            received = time.monotonic()
        if metrics is not None:
            metrics.claim_seconds.labels(destination=self.destination.code).observe(received - sent)
            for wait_seconds in claim.waits:
                metrics.queue_wait.labels(destination=self.destination.code).observe(wait_seconds)
        self._ready_in = claim.ready_in
        if claim.messages:
            self._lease_ends[claim.messages[0].claim_id] = sent + self.lease_seconds  # it began after `sent`
            # the tokens were taken when the claim ended in the database: the slot runs from then, so time
            # the answer spent on its way back (a stalled process) counts against it
            way_back = max(received - sent - claim.took, 0.0)
            self._send_by[claim.messages[0].claim_id] = received - way_back + self.destination.send_slot_seconds
            logger.info("batch claimed", extra={"destination": self.destination.code, "messages": len(claim.messages)})
        return claim.messages

    async def idle(self, claimed: int, room: int) -> None:
        """Until the bucket holds tokens again (the claim said when), or, with nothing waiting to go, until a
        NOTIFY or the poll."""
        if self._ready_in is None:
            await wait(self.wake, self.poll_seconds)
        elif self._ready_in > 0:
            await wait(self.stopping, min(self._ready_in, self.poll_seconds))

    async def work(self, message: Claimed) -> Answer:
        send_by = self._send_by.get(message.claim_id, math.inf)
        if time.monotonic() > send_by:
            return self.cut_short(message)  # too late for its slot (the process stalled): back to its queue
        started = time.perf_counter()
        answer = await self.gateway.send(message, send_by)
        metrics = self.dispatcher.metrics
        if metrics is not None:
            gateway = self.destination.gateway
            metrics.gateway_seconds.labels(gateway=gateway).observe(time.perf_counter() - started)
            metrics.outcomes.labels(gateway=gateway, outcome=answer.outcome).inc()
            if answer.outcome == "sent":
                metrics.dispatched.labels(destination=self.destination.code, tenant=message.tenant).inc(
                    message.segments
                )
        return answer

    def cut_short(self, message: Claimed) -> Answer:
        return Answer(message.message_id, "release")  # back to its queue, no attempt used, its tokens returned

    def errored(self, message: Claimed, error: BaseException) -> Answer:
        return Answer(
            message.message_id, "retry", error_code="dispatcher_error", delay=retry_delay(message.attempts + 1)
        )

    async def record(self, messages: list[Claimed], answers: list[Answer]) -> None:
        """Record the gateway's answers, durably (a message answered `sent` must never be sent again because
        a database crash lost its completion), and keep trying while the claim's lease lasts when the
        connection breaks or the server is away: the answers are kept, never dropped for the lease rescue to
        send again (docs/decisions/0019). A try after one whose end is unknown first asks whether the claim
        still holds its messages: if not, that try committed (or the lease ended) and nothing is left to do,
        so the throttle and the returned tokens are never applied twice."""
        claim_id = messages[0].claim_id
        self._send_by.pop(claim_id, None)
        lease_ends = self._lease_ends.pop(claim_id, time.monotonic())
        unsent = sum(m.segments for m, a in zip(messages, answers, strict=True) if a.outcome == "release")
        ids = [a.message_id for a in answers]
        tries = 0

        async def record(connection: asyncpg.Connection) -> None:
            nonlocal tries
            tries += 1
            if tries > 1 and not await dispatch.leased(connection, claim_id, ids):
                return
            if any(a.outcome == "throttled" for a in answers):
                await dispatch.throttle(connection, self.destination.id)
            await dispatch.complete(connection, claim_id, answers, self.dispatcher.settings.max_attempts)
            if unsent:
                await dispatch.return_tokens(connection, self.destination.id, unsent)

        await with_retries(self.pool, record, durable=True, idempotent_until=lease_ends)
        logger.info("batch completed", extra={"destination": self.destination.code, "messages": len(answers)})


class Dispatcher:
    def __init__(
        self, dsn: str, settings: DispatchSettings = DispatchSettings(), metrics: DispatchMetrics | None = None
    ) -> None:
        self.dsn = dsn
        self.settings = settings
        self.metrics = metrics
        self.current: dict[int, Destination] = {}
        """The destinations this process can serve (its gateway kinds), by id, as last read."""
        self._stopping = asyncio.Event()
        self._leases = Leases(dsn)
        self._loops: dict[Lease, DestinationLoop] = {}

    def serves(self, lease: Lease, destination: Destination) -> bool:
        return (
            not self._stopping.is_set()
            and lease in self._leases.held
            and self.current.get(destination.id) == destination
        )

    def stop(self) -> None:
        self._stopping.set()
        for loop in self._loops.values():
            loop.stop()  # idle loops notice at once; a claim in progress is never cut short

    def _notified(self, payload: str | None) -> None:
        for lease, loop in self._loops.items():
            if payload is None or payload == str(lease.destination_id):  # None: (re)connected, a NOTIFY may be lost
                loop.wake.set()

    async def run(self) -> None:
        # claims commit without waiting for the WAL flush: a database crash can lose the last few, whose messages
        # were still in flight (a completion, durable, flushes every claim before it), so the crash sends them
        # again with the same key (docs/decisions/0007, 0019); completions and submissions are durable
        pool = await db_pool.create(self.dsn, min_size=2, max_size=6, server_settings={"synchronous_commit": "off"})
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        tasks: dict[Lease, asyncio.Task[None]] = {}
        maintenance = asyncio.create_task(Maintenance(self.dsn, max_attempts=self.settings.max_attempts).run())
        # LISTEN only while holding leases: a NOTIFY wakes claimers, and a process without leases has none
        listener: asyncio.Task[None] | None = None
        logger.info("dispatcher started", extra={"pid": os.getpid()})
        refreshed = -math.inf
        outage = Outage("dispatcher")
        try:
            while not self._stopping.is_set():
                try:
                    if time.monotonic() - refreshed >= self.settings.destinations_refresh_seconds:
                        async with pool.acquire() as connection:
                            found = await dispatch.destinations(connection)
                        self.current = {d.id: d for d in found if for_destination(d, session) is not None}
                        refreshed = time.monotonic()
                    _, given_back = await self._leases.rebalance(list(self.current.values()))
                    for lease in given_back:
                        if lease in self._loops:
                            self._loops[lease].stop()
                    for lease in self._leases.held:
                        task = tasks.get(lease)
                        if task is None or task.done():
                            destination = self.current[lease.destination_id]
                            tasks[lease] = asyncio.create_task(self._serve(pool, session, destination, lease))
                    if self._leases.held and listener is None:
                        listener = asyncio.create_task(Listener(self.dsn, NOTIFY_CHANNEL, self._notified).run())
                    elif not self._leases.held and listener is not None:
                        listener.cancel()
                        listener = None
                    outage.succeeded()
                except DATABASE_ERRORS as error:
                    outage.failed(error)  # logged once per outage; tried again every leases_seconds
                await wait(self._stopping, self.settings.leases_seconds)
        finally:
            # however the loop ended: stop claiming, give the leases back (others may take over while this
            # process drains), let sends finish or release them, record every answer
            self.stop()
            await self._leases.close()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            helpers = [maintenance] + ([listener] if listener is not None else [])
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await session.close()
            await pool.close()
            logger.info("dispatcher stopped", extra={"pid": os.getpid()})

    async def _serve(
        self, pool: asyncpg.Pool, session: aiohttp.ClientSession, destination: Destination, lease: Lease
    ) -> None:
        """Claim for one destination while this process holds the lease and the destination is unchanged, then
        drain its sends."""
        gateway = for_destination(destination, session)
        assert gateway is not None
        loop = DestinationLoop(self, pool, gateway, destination, lease)
        self._loops[lease] = loop
        if not self.serves(lease, destination):
            loop.stop()
        logger.info(
            "destination served",
            extra={"destination": destination.code, "claimer": lease.claimer, "gateway": destination.url},
        )
        try:
            # the gateway gets ready first (an smpp gateway binds) and closes after the last send
            if await gateway.start(self.dsn, pool, lambda: not loop.stopping.is_set() and loop.keeps_going()):
                await loop.run()
        finally:
            await loop.drain(self.settings.grace_seconds)
            await gateway.close()
            if self._loops.get(lease) is loop:
                del self._loops[lease]
