"""Dispatcher: claims each destination's messages in fair order at its quota and forwards them to its
gateway. Stateless; run as many processes as needed against one database.

Each destination has its own loop (service/workers/loop.py): claim a batch (`fairlane.claim_v2`: fair
order, the quota taken inside the claim), send every message to the gateway concurrently (at most the
gateway's `max_in_flight`), record the answers (`fairlane.complete_v1`). A NOTIFY on `fairlane_ready`
wakes an idle destination's loop. One way to start (`run`), one to stop (`stop`, also on SIGTERM/SIGINT):
stop claiming, let in-flight sends finish for up to a grace period, release what is left back to its queue,
exit. Maintenance (service/workers/maintenance.py) runs in every dispatcher process, on one at a time.
"""

import asyncio
import logging
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
from service.workers.loop import DATABASE_ERRORS, BatchLoop, Listener, wait
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
    destinations_refresh_seconds: float = 5.0


class DestinationLoop(BatchLoop[Claimed, Answer]):
    """One destination: claim, send, record."""

    def __init__(
        self,
        dispatcher: "Dispatcher",
        pool: asyncpg.Pool,
        gateway: Gateway,
        destination: Destination,
    ) -> None:
        settings = dispatcher.settings
        super().__init__(
            destination.code,
            batch_size=settings.batch_size,
            max_in_flight=destination.max_in_flight,
            poll_seconds=settings.poll_seconds,
        )
        self.dispatcher = dispatcher
        self.pool = pool
        self.gateway = gateway
        self.destination = destination
        self.lease_seconds = destination.timeout_seconds + settings.lease_seconds
        self.token_wait = min(max(1.0 / destination.rate, 0.002), settings.poll_seconds)
        self._ready = False

    def keeps_going(self) -> bool:
        """A changed or removed destination's loop ends after its current claim; a new one starts."""
        return self.dispatcher.current.get(self.destination.id) == self.destination

    async def claim(self, room: int) -> list[Claimed]:
        metrics = self.dispatcher.metrics
        async with self.pool.acquire() as connection:
            started = time.perf_counter()
            claimed = await dispatch.claim(connection, self.destination.id, room, self.lease_seconds)
            if metrics is not None:
                metrics.claim_seconds.labels(destination=self.destination.code).observe(time.perf_counter() - started)
            if not claimed:
                self._ready = await dispatch.ready(connection, self.destination.id)
            elif metrics is not None:
                for wait_seconds in await dispatch.queue_waits(connection, [m.message_id for m in claimed]):
                    metrics.queue_wait.labels(destination=self.destination.code).observe(wait_seconds)
        if claimed:
            logger.info("batch claimed", extra={"destination": self.destination.code, "messages": len(claimed)})
        return claimed

    async def idle(self, claimed: int, room: int) -> None:
        # messages claimed: claim again at once; messages ready but no token: the next one comes within
        # 1/rate; nothing ready (empty, backing off, capped senders): wait for a NOTIFY or the poll
        if not claimed:
            await wait(self.wake, self.token_wait if self._ready else self.poll_seconds)

    async def work(self, message: Claimed) -> Answer:
        started = time.perf_counter()
        answer = await self.gateway.send(message)
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
        return Answer(message.message_id, "release")  # back to its queue, no attempt used

    def errored(self, message: Claimed, error: BaseException) -> Answer:
        return Answer(
            message.message_id, "retry", error_code="dispatcher_error", delay=retry_delay(message.attempts + 1)
        )

    async def record(self, messages: list[Claimed], answers: list[Answer]) -> None:
        async def record(connection: asyncpg.Connection) -> None:
            if any(a.outcome == "throttled" for a in answers):
                await dispatch.throttle(connection, self.destination.id)
            await dispatch.complete(connection, messages[0].claim_id, answers, self.dispatcher.settings.max_attempts)

        await with_retries(self.pool, record)
        logger.info("batch completed", extra={"destination": self.destination.code, "messages": len(answers)})


class Dispatcher:
    def __init__(
        self, dsn: str, settings: DispatchSettings = DispatchSettings(), metrics: DispatchMetrics | None = None
    ) -> None:
        self.dsn = dsn
        self.settings = settings
        self.metrics = metrics
        self.current: dict[int, Destination] = {}
        """The destinations served, by id, as last read."""
        self._stopping = asyncio.Event()
        self._loops: dict[int, DestinationLoop] = {}

    def stop(self) -> None:
        self._stopping.set()
        for loop in self._loops.values():
            loop.stop()  # idle loops notice at once; a claim in progress is never cut short

    def _notified(self, payload: str | None) -> None:
        if payload is None:  # (re)connected: a NOTIFY may have been missed
            for loop in self._loops.values():
                loop.wake.set()
            return
        try:
            loop = self._loops.get(int(payload))
        except ValueError:
            return
        if loop is not None:
            loop.wake.set()

    async def run(self) -> None:
        # claims and completions commit without waiting for the WAL flush: a database crash can lose the last
        # few, which leases and idempotency keys already cover (docs/decisions/0007); submissions stay durable
        pool = await db_pool.create(self.dsn, min_size=2, max_size=6, server_settings={"synchronous_commit": "off"})
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        tasks: dict[int, asyncio.Task[None]] = {}
        helpers = [
            asyncio.create_task(Listener(self.dsn, NOTIFY_CHANNEL, self._notified).run()),
            asyncio.create_task(Maintenance(self.dsn, max_attempts=self.settings.max_attempts).run()),
        ]
        logger.info("dispatcher started", extra={"pid": os.getpid()})
        try:
            while not self._stopping.is_set():
                try:
                    async with pool.acquire() as connection:
                        found = await dispatch.destinations(connection)
                    self.current = {d.id: d for d in found if for_destination(d, session) is not None}
                    for destination in self.current.values():
                        task = tasks.get(destination.id)
                        if task is None or task.done():
                            tasks[destination.id] = asyncio.create_task(self._serve(pool, session, destination))
                except DATABASE_ERRORS as error:
                    logger.warning("destinations not read", extra={"error": str(error)})
                await wait(self._stopping, self.settings.destinations_refresh_seconds)
        finally:
            # however the loop ended: stop claiming, let sends finish or release them, record every answer
            self.stop()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await session.close()
            await pool.close()
            logger.info("dispatcher stopped", extra={"pid": os.getpid()})

    async def _serve(self, pool: asyncpg.Pool, session: aiohttp.ClientSession, destination: Destination) -> None:
        """Serve one destination until it changes or the dispatcher stops, then drain its sends."""
        gateway = for_destination(destination, session)
        assert gateway is not None
        loop = DestinationLoop(self, pool, gateway, destination)
        self._loops[destination.id] = loop
        if self._stopping.is_set():
            loop.stop()
        logger.info("destination served", extra={"destination": destination.code, "gateway": destination.url})
        try:
            await loop.run()
        finally:
            await loop.drain(self.settings.grace_seconds)
            if self._loops.get(destination.id) is loop:
                del self._loops[destination.id]
