"""Status callback sender (`fairlane callbacks`): POSTs each status change of a message whose message or
tenant has a status_callback URL, at least once, signed the Standard Webhooks way (SPEC §4).

A trigger writes a fairlane.callbacks row in the event's own transaction and NOTIFYs fairlane_callbacks. The
sender LISTENs (polling as a fallback), leases due rows with SKIP LOCKED, posts them concurrently (bounded)
and records each batch: 2xx means delivered; any other answer, a timeout or a connection error means another
attempt after an exponential backoff with jitter, until `max_age_seconds` after the row was created, when
the row is abandoned. Stateless: run as many as needed. One way to start (`run`), one to stop (`stop`, also
on SIGTERM/SIGINT): stop claiming, let in-flight posts finish for up to a grace period, put the rest back.

What a receiver gets (the body is the same on every attempt; the timestamp and signature are per attempt):

    POST <status_callback>
    content-type: application/json
    webhook-id: 123            the event id in decimal, equal to data.event_id: deduplicate on it
    webhook-timestamp: 1767225600          this attempt's time, Unix seconds
    webhook-signature: v1,<base64 HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")>
                       key = base64-decode of the tenant's signing secret without its "whsec_" prefix

    {"type": "message.status", "timestamp": "2026-01-01T00:00:00.000000Z",
     "data": {"event_id": "123", "sequence": 2, "message_id": "45", "status": "sent", "at": "<as timestamp>",
              "to": "+15551234567", "from": "55501", "destination": "US-SC", "segments": 1,
              "error_code": null, "error_message": null, "detail": {"provider_id": "p-1"}}}
"""

import asyncio
import logging
import os
import random
import signal
import time
from dataclasses import dataclass, fields
from datetime import UTC, datetime

import aiohttp
import asyncpg
from standardwebhooks.webhooks import Webhook

from db import callbacks
from db import pool as db_pool
from db.callbacks import Callback, Failure
from db.transaction import with_retries

logger = logging.getLogger(__name__)
NOTIFY_CHANNEL = "fairlane_callbacks"
DATABASE_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


@dataclass(frozen=True)
class CallbackSettings:
    batch_size: int = 100
    max_in_flight: int = 200
    timeout_seconds: float = 10.0
    lease_seconds: float = 30.0  # how long a claimed row stays leased beyond the post timeout
    grace_seconds: float = 10.0
    poll_seconds: float = 1.0
    backoff_seconds: float = 5.0  # the first retry comes after about this long, then twice as long each time
    max_backoff_seconds: float = 3600.0
    max_age_seconds: float = 86400.0  # a row failing after this long is abandoned

    def __post_init__(self) -> None:
        for field in fields(self):
            if not getattr(self, field.name) > 0:
                raise ValueError(f"{field.name} must be positive, got {getattr(self, field.name)!r}")


def retry_delay(attempts: int, settings: CallbackSettings) -> float:
    """Seconds before the next attempt of a callback that has failed `attempts` times: backoff × 2^(attempts-1)
    capped at max_backoff, with equal jitter (between half and all of it)."""
    delay = min(settings.max_backoff_seconds, settings.backoff_seconds * 2.0 ** min(attempts - 1, 40))
    return delay / 2 + random.uniform(0, delay / 2)


class CallbackSender:
    def __init__(self, dsn: str, settings: CallbackSettings = CallbackSettings()) -> None:
        self.dsn = dsn
        self.settings = settings
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._in_flight = 0
        self._batches: set[asyncio.Task[None]] = set()
        self._posts: set[asyncio.Task[str | None]] = set()
        # counters and test hooks: `listening` is set once LISTEN is up; `progress` is notified after each
        # batch's outcomes are committed
        self.listening = asyncio.Event()
        self.progress = asyncio.Condition()
        self.delivered = 0
        self.failed = 0
        self.abandoned = 0

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._slot_freed.set()

    async def run(self) -> None:
        pool = await db_pool.create(self.dsn, min_size=1, max_size=4)
        session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout_seconds),
            connector=aiohttp.TCPConnector(limit=0),
        )
        listener = asyncio.create_task(self._listen())
        logger.info("callbacks started", extra={"pid": os.getpid()})
        try:
            await self._claim_loop(pool, session)
        finally:
            self.stop()
            await self._drain()
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            await session.close()
            await pool.close()
            logger.info("callbacks stopped", extra={"pid": os.getpid()})

    async def _claim_loop(self, pool: asyncpg.Pool, session: aiohttp.ClientSession) -> None:
        lease = self.settings.timeout_seconds + self.settings.lease_seconds
        while not self._stopping.is_set():
            room = min(self.settings.batch_size, self.settings.max_in_flight - self._in_flight)
            if room <= 0:
                self._slot_freed.clear()
                await _wait(self._slot_freed, self.settings.poll_seconds)
                continue
            self._wake.clear()  # before the claim: a NOTIFY during it means claim again
            try:
                async with pool.acquire() as connection:
                    claimed = await callbacks.claim_callbacks(connection, room, lease)
            except DATABASE_ERRORS as error:
                logger.warning("callbacks not claimed", extra={"error": str(error)})
                await _wait(self._stopping, self.settings.poll_seconds)
                continue
            if claimed:
                self._in_flight += len(claimed)
                task = asyncio.create_task(self._send(pool, session, claimed))
                self._batches.add(task)
                task.add_done_callback(self._batches.discard)
            if len(claimed) < room:  # nothing more due now: wait for a NOTIFY, a retry coming due or the poll
                await _wait(self._wake, self.settings.poll_seconds)

    async def _send(self, pool: asyncpg.Pool, session: aiohttp.ClientSession, claimed: list[Callback]) -> None:
        posts = {asyncio.create_task(self._post(session, callback)): callback for callback in claimed}
        self._posts.update(posts)
        try:
            await asyncio.wait(posts)
        except asyncio.CancelledError:
            for task in posts:
                task.cancel()
            await asyncio.wait(posts)
        finally:
            self._posts.difference_update(posts)
        delivered: list[int] = []
        failures: list[Failure] = []
        for task, callback in posts.items():
            if task.cancelled():  # cut short at shutdown: due again at once
                failures.append(Failure(callback.event_id, 0.0, "sender stopped"))
                continue
            error = task.exception()
            if error is not None:
                logger.error("callback failed", exc_info=error, extra={"event_id": callback.event_id})
            result = f"sender error: {error!r}" if error is not None else task.result()
            if result is None:
                delivered.append(callback.event_id)
            else:
                failures.append(Failure(callback.event_id, retry_delay(callback.attempts, self.settings), result))
        self._in_flight -= len(claimed)
        self._slot_freed.set()
        await self._record(pool, delivered, failures)

    async def _post(self, session: aiohttp.ClientSession, callback: Callback) -> str | None:
        """POST one callback; None when the receiver answered 2xx, else what went wrong."""
        started = time.monotonic()
        where = {"event_id": callback.event_id, "url": callback.url.split("?", 1)[0], "attempts": callback.attempts}
        webhook_id = str(callback.event_id)
        timestamp = datetime.now(UTC).replace(microsecond=0)
        error: str | None
        try:
            if callback.signing_secret is None:
                raise ValueError("the tenant has no signing secret")
            signature = Webhook(callback.signing_secret).sign(webhook_id, timestamp, callback.payload)
            headers = {
                "content-type": "application/json",
                "webhook-id": webhook_id,
                "webhook-timestamp": str(int(timestamp.timestamp())),
                "webhook-signature": signature,
            }
            async with session.post(
                callback.url, data=callback.payload.encode(), headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                if 200 <= status < 300:
                    seconds = round(time.monotonic() - started, 3)
                    logger.info("callback delivered", extra={**where, "status": status, "seconds": seconds})
                    return None
                text = (await response.content.read(200)).decode(errors="replace").strip()
                error = f"HTTP {status}: {text}" if text else f"HTTP {status}"
        except TimeoutError:
            error = f"no answer within {self.settings.timeout_seconds} s"
        except (aiohttp.ClientError, ValueError, OSError) as exception:
            error = f"{type(exception).__name__}: {exception}"
        seconds = round(time.monotonic() - started, 3)
        logger.warning("callback failed", extra={**where, "error": error, "seconds": seconds})
        return error

    async def _record(self, pool: asyncpg.Pool, delivered: list[int], failures: list[Failure]) -> None:
        async def record(connection: asyncpg.Connection) -> list[int]:
            if delivered:
                await callbacks.delivered(connection, delivered)
            if failures:
                return await callbacks.retry_later(connection, failures, self.settings.max_age_seconds)
            return []

        try:
            abandoned = await with_retries(pool, record)
        except Exception:
            # the lease protects the rows: they come due again when it ends
            logger.exception("callback outcomes not recorded", extra={"callbacks": len(delivered) + len(failures)})
            return
        for event_id in abandoned:
            logger.warning("callback abandoned", extra={"event_id": event_id})
        retries = [f.delay for f in failures if f.event_id not in abandoned]
        if retries and min(retries) < self.settings.poll_seconds and not self._stopping.is_set():
            asyncio.get_running_loop().call_later(min(retries), self._wake.set)
        self.delivered += len(delivered)
        self.failed += len(failures)
        self.abandoned += len(abandoned)
        async with self.progress:
            self.progress.notify_all()

    async def _drain(self) -> None:
        """Let in-flight posts finish for up to the grace period, then cut them short; every batch records
        its outcomes (the cut ones are due again at once)."""
        batches = set(self._batches)
        if not batches:
            return
        _, pending = await asyncio.wait(batches, timeout=self.settings.grace_seconds)
        if pending:
            for post in list(self._posts):
                post.cancel()
        await asyncio.gather(*batches, return_exceptions=True)

    def _notified(self, connection: object, pid: int, channel: str, payload: str) -> None:
        self._wake.set()

    async def _listen(self) -> None:
        """Keep a LISTEN connection up (checked every poll interval); after (re)connecting, claim at once in
        case a NOTIFY was missed meanwhile."""
        connection: asyncpg.Connection | None = None
        try:
            while True:
                if connection is None or connection.is_closed():
                    try:
                        connection = await asyncpg.connect(self.dsn)
                        await connection.add_listener(NOTIFY_CHANNEL, self._notified)
                        self._wake.set()
                        self.listening.set()
                    except DATABASE_ERRORS as error:
                        logger.warning("callbacks not listening", extra={"error": str(error)})
                        if connection is not None:
                            connection.terminate()
                        connection = None
                await asyncio.sleep(self.settings.poll_seconds)
        finally:
            if connection is not None and not connection.is_closed():
                await connection.close()


async def _wait(event: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), timeout=seconds)
    except TimeoutError:
        pass


def run_process(dsn: str, settings: CallbackSettings = CallbackSettings()) -> int:
    """Run one callback sender in this process until SIGTERM or SIGINT; exit status 0 after a clean stop."""

    async def main() -> None:
        sender = CallbackSender(dsn, settings)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, sender.stop)
        await sender.run()

    asyncio.run(main())
    return 0
