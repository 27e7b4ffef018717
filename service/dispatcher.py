"""Dispatcher: claims each destination's messages in fair order at its quota and forwards them to its
gateway. Stateless; run as many processes as needed against one database.

One way to start (`run`), one to stop (`stop`, also on SIGTERM/SIGINT): stop claiming, let in-flight sends
finish for up to a grace period, release what is left back to its queue, exit. Lease rescue, scheduled
promotion and key pruning run in whichever process holds the maintenance advisory lock.
"""

import asyncio
import logging
import os
import signal
import time
from dataclasses import dataclass

import aiohttp
import asyncpg

from db import dispatch
from db import pool as db_pool
from db.dispatch import Answer, Claimed, Destination
from db.transaction import with_retries
from service.gateways import HttpGateway, retry_delay
from service.metrics import DispatchMetrics

logger = logging.getLogger(__name__)
NOTIFY_CHANNEL = "fairlane_ready"
GATEWAY_KINDS = ("http", "simulator")  # smpp is not built yet


@dataclass(frozen=True)
class DispatchSettings:
    batch_size: int = 100
    lease_seconds: float = 60.0
    max_attempts: int = 5
    grace_seconds: float = 10.0
    poll_seconds: float = 0.5
    maintenance_seconds: float = 1.0
    destinations_refresh_seconds: float = 5.0


class Dispatcher:
    def __init__(
        self, dsn: str, settings: DispatchSettings = DispatchSettings(), metrics: DispatchMetrics | None = None
    ) -> None:
        self.dsn = dsn
        self.settings = settings
        self.metrics = metrics
        self._stopping = asyncio.Event()
        self._wake: dict[int, asyncio.Event] = {}
        self._in_flight: dict[int, int] = {}
        self._slot_freed: dict[int, asyncio.Event] = {}
        self._batches: set[asyncio.Task[None]] = set()
        self._sends: set[asyncio.Task[Answer]] = set()
        self._current: dict[int, Destination] = {}

    def stop(self) -> None:
        self._stopping.set()
        for event in (*self._wake.values(), *self._slot_freed.values()):
            event.set()  # idle loops notice at once; a claim in progress is never cut short

    async def run(self) -> None:
        # claims and completions commit without waiting for the WAL flush: a database crash can lose the last
        # few, which leases and idempotency keys already cover (docs/decisions/0007); submissions stay durable
        pool = await db_pool.create(self.dsn, min_size=2, max_size=6, server_settings={"synchronous_commit": "off"})
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        loops: dict[int, asyncio.Task[None]] = {}
        maintenance = asyncio.create_task(self._maintain())
        logger.info("dispatcher started", extra={"pid": os.getpid()})
        try:
            while not self._stopping.is_set():
                try:
                    async with pool.acquire() as connection:
                        found = await dispatch.destinations(connection)
                    # a changed or removed destination's loop ends after its current claim; a new one starts
                    self._current = {d.id: d for d in found if d.kind in GATEWAY_KINDS}
                    for destination in self._current.values():
                        running = loops.get(destination.id)
                        if running is None or running.done() or running.get_name() != repr(destination):
                            loops[destination.id] = asyncio.create_task(
                                self._serve(pool, session, destination), name=repr(destination)
                            )
                except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as error:
                    logger.warning("destinations not read", extra={"error": str(error)})
                await _wait(self._stopping, self.settings.destinations_refresh_seconds)
        finally:
            # however the loop ended: stop claiming, let sends finish or release them, record every answer
            self.stop()
            await asyncio.gather(*loops.values(), return_exceptions=True)
            await self._drain()
            maintenance.cancel()
            await asyncio.gather(maintenance, return_exceptions=True)
            await session.close()
            await pool.close()
            logger.info("dispatcher stopped", extra={"pid": os.getpid()})

    def _notified(self, connection: object, pid: int, channel: str, payload: str) -> None:
        try:
            event = self._wake.get(int(payload))
        except ValueError:
            return
        if event is not None:
            event.set()

    async def _serve(self, pool: asyncpg.Pool, session: aiohttp.ClientSession, destination: Destination) -> None:
        gateway = HttpGateway(session, destination.url, destination.timeout_seconds)
        wake = self._wake.setdefault(destination.id, asyncio.Event())
        slot_freed = self._slot_freed.setdefault(destination.id, asyncio.Event())
        self._in_flight.setdefault(destination.id, 0)
        lease = destination.timeout_seconds + self.settings.lease_seconds
        token_wait = min(max(1.0 / destination.rate, 0.002), self.settings.poll_seconds)
        logger.info("destination served", extra={"destination": destination.code, "gateway": destination.url})
        while not self._stopping.is_set() and self._current.get(destination.id) == destination:
            room = min(self.settings.batch_size, destination.max_in_flight - self._in_flight[destination.id])
            if room <= 0:
                slot_freed.clear()
                await _wait(slot_freed, self.settings.poll_seconds)
                continue
            wake.clear()
            try:
                async with pool.acquire() as connection:
                    claimed = await dispatch.claim(connection, destination.id, room, lease)
                    if not claimed:
                        ready = await dispatch.ready(connection, destination.id)
                    elif self.metrics is not None:
                        waits = await dispatch.queue_waits(connection, [m.message_id for m in claimed])
                        for wait in waits:
                            self.metrics.queue_wait.labels(destination=destination.code).observe(wait)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as error:
                logger.warning("claim failed", extra={"destination": destination.code, "error": str(error)})
                await _wait(self._stopping, self.settings.poll_seconds)
                continue
            if claimed:
                logger.info("batch claimed", extra={"destination": destination.code, "messages": len(claimed)})
                self._in_flight[destination.id] += len(claimed)
                task = asyncio.create_task(self._send(pool, gateway, destination, claimed))
                self._batches.add(task)
                task.add_done_callback(self._batches.discard)
                continue
            # messages ready but no token: the next one comes within 1/rate; nothing ready (empty, backing
            # off, capped senders): wait for a NOTIFY or the poll
            await _wait(wake, token_wait if ready else self.settings.poll_seconds)

    async def _send(
        self, pool: asyncpg.Pool, gateway: HttpGateway, destination: Destination, claimed: list[Claimed]
    ) -> None:
        sends = {asyncio.create_task(self._timed(gateway, destination, message)): message for message in claimed}
        self._sends.update(sends)
        try:
            await asyncio.wait(sends)
        except asyncio.CancelledError:
            for task in sends:
                task.cancel()
            await asyncio.wait(sends)
        finally:
            self._sends.difference_update(sends)
        answers = []
        for task, message in sends.items():
            if task.cancelled():  # cut short at shutdown: back to its queue, no attempt used
                answers.append(Answer(message.message_id, "release"))
            elif task.exception() is not None:
                logger.error("send failed", exc_info=task.exception(), extra={"message_id": message.message_id})
                answers.append(
                    Answer(
                        message.message_id,
                        "retry",
                        error_code="dispatcher_error",
                        delay=retry_delay(message.attempts + 1),
                    )
                )
            else:
                answers.append(task.result())
        self._in_flight[destination.id] -= len(claimed)
        self._slot_freed[destination.id].set()
        await self._record(pool, destination, claimed[0].claim_id, answers)

    async def _timed(self, gateway: HttpGateway, destination: Destination, message: Claimed) -> Answer:
        started = time.perf_counter()
        answer = await gateway.send(message)
        if self.metrics is not None:
            self.metrics.gateway_seconds.labels(gateway=destination.gateway).observe(time.perf_counter() - started)
            self.metrics.outcomes.labels(gateway=destination.gateway, outcome=answer.outcome).inc()
            if answer.outcome == "sent":
                self.metrics.dispatched.labels(destination=destination.code, tenant=message.tenant).inc(
                    message.segments
                )
        return answer

    async def _record(self, pool: asyncpg.Pool, destination: Destination, claim_id: int, answers: list[Answer]) -> None:
        async def record(connection: asyncpg.Connection) -> None:
            if any(a.outcome == "throttled" for a in answers):
                await dispatch.throttle(connection, destination.id)
            await dispatch.complete(connection, claim_id, answers, self.settings.max_attempts)

        try:
            await with_retries(pool, record)
        except Exception:
            # the lease protects the messages: rescue requeues them when it expires
            logger.exception("completion failed", extra={"destination": destination.code, "claim": claim_id})
            return
        logger.info("batch completed", extra={"destination": destination.code, "messages": len(answers)})

    async def _drain(self) -> None:
        """Let in-flight sends finish for up to the grace period, then cut the gateway calls short; every
        batch then records what its gateway answered and releases the rest back to their queues."""
        batches = set(self._batches)
        if not batches:
            return
        _, pending = await asyncio.wait(batches, timeout=self.settings.grace_seconds)
        if pending:
            for send in list(self._sends):
                send.cancel()
        await asyncio.gather(*batches, return_exceptions=True)

    async def _maintain(self) -> None:
        """Every second: keep the LISTEN connection up; on the leader, rescue leases, promote scheduled
        messages and (every minute) prune idempotency keys and finished callbacks."""
        connection: asyncpg.Connection | None = None
        listener: asyncpg.Connection | None = None
        leader = False
        ticks = 0
        try:
            while True:
                try:
                    if listener is None or listener.is_closed():
                        listener = await asyncpg.connect(self.dsn)
                        await listener.add_listener(NOTIFY_CHANNEL, self._notified)
                    if connection is None or connection.is_closed():
                        connection = await asyncpg.connect(self.dsn)
                        leader = False
                    if not leader:
                        leader = await dispatch.try_lead(connection)
                        if leader:
                            logger.info("maintenance leader", extra={"pid": os.getpid()})
                    if leader:
                        rescued = await dispatch.rescue(connection, self.settings.max_attempts)
                        promoted = await dispatch.promote(connection)
                        if rescued or promoted:
                            logger.info("maintenance", extra={"rescued": rescued, "promoted": promoted})
                        if ticks % 60 == 0:
                            await dispatch.prune(connection)
                except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as error:
                    logger.warning("maintenance failed", extra={"error": str(error)})
                    connection = None
                ticks += 1
                await asyncio.sleep(self.settings.maintenance_seconds)
        finally:
            for open_connection in (listener, connection):
                if open_connection is not None and not open_connection.is_closed():
                    await open_connection.close()


async def _wait(event: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), timeout=seconds)
    except TimeoutError:
        pass


def run_process(dsn: str, settings: DispatchSettings = DispatchSettings(), metrics_port: int | None = None) -> int:
    """Run one dispatcher in this process until SIGTERM or SIGINT; exit status 0 after a clean stop.
    With a metrics port, its Prometheus metrics are served on 127.0.0.1:port/metrics."""
    metrics = None
    if metrics_port is not None:
        try:
            metrics = DispatchMetrics()
            metrics.serve(metrics_port)
        except OSError as error:  # metrics are an aid: dispatching goes on without them
            logger.warning("metrics port unavailable", extra={"port": metrics_port, "error": str(error)})
            metrics = None

    async def main() -> None:
        dispatcher = Dispatcher(dsn, settings, metrics)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, dispatcher.stop)
        await dispatcher.run()

    asyncio.run(main())
    return 0
