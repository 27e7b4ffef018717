"""The one worker loop, shared by the dispatcher (one per destination) and the callback sender: claim a
leased batch, work its items concurrently (at most `max_in_flight` at once), record the outcomes.

One way to start (`run`), one to stop (`stop`): claiming stops at once (a claim in progress is never cut
short), then `drain` lets in-flight work finish for up to the grace period, cuts what is left short (those
items get `cut_short` outcomes, e.g. "release back to the queue") and waits until every batch has recorded.
A worker's `record` keeps trying while the batch's lease lasts (docs/decisions/0019); a batch whose recording
still fails keeps its lease, so its items come due again when the lease ends.

While the database is away (a restart, a crash, a failover to the same address), every part reconnects by
itself: a failed claim is tried again after a backoff (0.1 s doubling up to 2 s), logged once as `database
unavailable` when the first claim fails and `database reconnected` when one succeeds again."""

import asyncio
import logging
import random
import signal
import time
from abc import ABC, abstractmethod
from typing import Generic, Protocol, TypeVar

import asyncpg

logger = logging.getLogger(__name__)
Item = TypeVar("Item")
Outcome = TypeVar("Outcome")
# what a lost or refused database connection raises: log, wait, try again
DATABASE_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


async def wait(event: asyncio.Event, seconds: float) -> None:
    """Until `event` is set or `seconds` have passed."""
    try:
        await asyncio.wait_for(event.wait(), timeout=seconds)
    except TimeoutError:
        pass


class Outage:
    """How a loop rides out the database being away: the waits between tries (`first` seconds, twice as long
    after each further failure, at most `cap`, jittered by up to a quarter) and one log line when it starts
    and one when it ends."""

    def __init__(self, name: str, first: float = 0.1, cap: float = 2.0) -> None:
        self.name = name
        self.first = first
        self.cap = cap
        self.failures = 0
        self.since = 0.0

    def failed(self, error: BaseException) -> float:
        """Seconds to wait before trying again."""
        if not self.failures:
            self.since = time.monotonic()
            reason = str(error) or type(error).__name__
            logger.warning("database unavailable", extra={"loop": self.name, "error": reason})
        self.failures += 1
        delay = min(self.cap, self.first * 2 ** min(self.failures - 1, 20))
        return delay * random.uniform(0.75, 1.0)

    def succeeded(self) -> None:
        if self.failures:
            seconds = round(time.monotonic() - self.since, 3)
            extra = {"loop": self.name, "tries": self.failures, "seconds": seconds}
            logger.warning("database reconnected", extra=extra)
            self.failures = 0


class BatchLoop(ABC, Generic[Item, Outcome]):
    def __init__(self, name: str, *, batch_size: int, max_in_flight: int, poll_seconds: float) -> None:
        self.name = name
        self.batch_size = batch_size
        self.max_in_flight = max_in_flight
        self.poll_seconds = poll_seconds
        self.wake = asyncio.Event()
        """Set when there may be work now (a NOTIFY, a retry coming due): an idle loop claims at once."""
        self.stopping = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._in_flight = 0
        self._batches: set[asyncio.Task[None]] = set()
        self._items: set[asyncio.Task[Outcome]] = set()
        self.outage = Outage(name)

    # --- what a worker provides ---------------------------------------------------------------------

    @abstractmethod
    async def claim(self, room: int) -> list[Item]:
        """Lease up to `room` items."""

    @abstractmethod
    async def work(self, item: Item) -> Outcome:
        """Do one item (send it); the outcome is recorded with its batch's."""

    @abstractmethod
    def cut_short(self, item: Item) -> Outcome:
        """The outcome of an item whose work was cancelled at shutdown."""

    @abstractmethod
    def errored(self, item: Item, error: BaseException) -> Outcome:
        """The outcome of an item whose work raised."""

    @abstractmethod
    async def record(self, items: list[Item], outcomes: list[Outcome]) -> None:
        """Record a batch's outcomes (its lease protects the items if this fails)."""

    async def idle(self, claimed: int, room: int) -> None:
        """After a claim that found less than `room`: wait for a wake-up or the poll interval."""
        if claimed < room:
            await wait(self.wake, self.poll_seconds)

    def keeps_going(self) -> bool:
        """False ends the loop after its current claim (its work still finishes)."""
        return True

    # --- the loop -----------------------------------------------------------------------------------

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        self._slot_freed.set()

    async def run(self) -> None:
        while not self.stopping.is_set() and self.keeps_going():
            room = min(self.batch_size, self.max_in_flight - self._in_flight)
            if room <= 0:
                self._slot_freed.clear()
                await wait(self._slot_freed, self.poll_seconds)
                continue
            self.wake.clear()  # before the claim: a wake-up during it means claim again
            try:
                items = await self.claim(room)
            except DATABASE_ERRORS as error:
                if not self.outage.failures:  # the first of a run of failures (the database away: logged once)
                    reason = str(error) or type(error).__name__
                    logger.warning("claim failed", extra={"loop": self.name, "error": reason})
                await wait(self.stopping, self.outage.failed(error))
                continue
            self.outage.succeeded()
            if items:
                self._in_flight += len(items)
                task = asyncio.create_task(self._batch(items))
                self._batches.add(task)
                task.add_done_callback(self._batches.discard)
            await self.idle(len(items), room)

    async def _batch(self, items: list[Item]) -> None:
        tasks = {asyncio.create_task(self.work(item)): item for item in items}
        self._items.update(tasks)
        try:
            await asyncio.wait(tasks)
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
        finally:
            self._items.difference_update(tasks)
        outcomes = []
        for task, item in tasks.items():
            if task.cancelled():
                outcomes.append(self.cut_short(item))
            elif (error := task.exception()) is not None:
                logger.error("work failed", exc_info=error, extra={"loop": self.name})
                outcomes.append(self.errored(item, error))
            else:
                outcomes.append(task.result())
        self._in_flight -= len(items)
        self._slot_freed.set()
        try:
            await self.record(items, outcomes)
        except Exception:
            logger.exception("outcomes not recorded", extra={"loop": self.name, "items": len(items)})

    async def drain(self, grace_seconds: float) -> None:
        """Let in-flight work finish for up to `grace_seconds`, then cut it short; every batch records."""
        batches = set(self._batches)
        if not batches:
            return
        _, pending = await asyncio.wait(batches, timeout=grace_seconds)
        if pending:
            for task in list(self._items):
                task.cancel()
        await asyncio.gather(*batches, return_exceptions=True)


class Listener:
    """Keeps a LISTEN connection on `channel` up (checked every `check_seconds`), calling `notified` with
    each payload, and with None after (re)connecting, when a NOTIFY may have been missed."""

    def __init__(self, dsn: str, channel: str, notified: "Notified", check_seconds: float = 1.0) -> None:
        self.dsn = dsn
        self.channel = channel
        self.notified = notified
        self.check_seconds = check_seconds
        self.listening = asyncio.Event()
        """Set once LISTEN is up (a test hook)."""

    def _callback(self, connection: object, pid: int, channel: str, payload: str) -> None:
        self.notified(payload)

    async def run(self) -> None:
        connection: asyncpg.Connection | None = None
        outage = Outage(f"listen {self.channel}", cap=self.check_seconds)
        try:
            while True:
                delay = self.check_seconds
                if connection is None or connection.is_closed():
                    self.listening.clear()
                    try:
                        connection = await asyncpg.connect(self.dsn)
                        await connection.add_listener(self.channel, self._callback)
                        self.notified(None)
                        self.listening.set()
                        outage.succeeded()
                    except DATABASE_ERRORS as error:
                        delay = outage.failed(error)
                        if connection is not None:
                            connection.terminate()
                        connection = None
                await asyncio.sleep(delay)
        finally:
            if connection is not None and not connection.is_closed():
                await connection.close()


class Notified(Protocol):
    def __call__(self, payload: str | None) -> None: ...


class Worker(Protocol):
    def stop(self) -> None: ...

    async def run(self) -> None: ...


def serve(worker: Worker) -> int:
    """Run a worker in this process until SIGTERM or SIGINT; exit status 0 after a clean stop."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, worker.stop)
        await worker.run()

    asyncio.run(main())
    return 0
