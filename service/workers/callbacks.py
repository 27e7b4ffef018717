"""Status callback sender (`fairlane callbacks`): POSTs each status change of a message whose message or
tenant has a status_callback URL, at least once, signed the Standard Webhooks way (SPEC §4).

A trigger writes a fairlane.callbacks row in the event's own transaction and NOTIFYs fairlane_callbacks. The
sender LISTENs (polling as a fallback) and runs the worker loop (service/workers/loop.py): lease due rows with
SKIP LOCKED, post them concurrently (bounded) and record each batch: 2xx means delivered; any other answer, a
timeout or a connection error means another attempt after an exponential backoff with jitter, until
`max_age_seconds` after the row was created, when the row is abandoned. Stateless: run as many as needed.
One way to start (`run`), one to stop (`stop`, also on SIGTERM/SIGINT): stop claiming, let in-flight posts
finish for up to a grace period, put the rest back.

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
from service.workers.loop import BatchLoop, Listener

logger = logging.getLogger(__name__)
NOTIFY_CHANNEL = "fairlane_callbacks"
Outcome = str | None
"""None when the receiver answered 2xx, else what went wrong."""


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


class CallbackSender(BatchLoop[Callback, Outcome]):
    def __init__(self, dsn: str, settings: CallbackSettings = CallbackSettings()) -> None:
        super().__init__(
            "callbacks",
            batch_size=settings.batch_size,
            max_in_flight=settings.max_in_flight,
            poll_seconds=settings.poll_seconds,
        )
        self.dsn = dsn
        self.settings = settings
        self.listener = Listener(dsn, NOTIFY_CHANNEL, self._notified, settings.poll_seconds)
        self.listening = self.listener.listening
        self._pool: asyncpg.Pool | None = None
        self._session: aiohttp.ClientSession | None = None
        # counters and test hooks: `progress` is notified after each batch's outcomes are committed
        self.progress = asyncio.Condition()
        self.delivered = 0
        self.failed = 0
        self.abandoned = 0

    def _notified(self, payload: str | None) -> None:
        self.wake.set()

    async def run(self) -> None:
        self._pool = await db_pool.create(self.dsn, min_size=1, max_size=4)
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout_seconds),
            connector=aiohttp.TCPConnector(limit=0),
        )
        listener = asyncio.create_task(self.listener.run())
        logger.info("callbacks started", extra={"pid": os.getpid()})
        try:
            await super().run()
        finally:
            self.stop()
            await self.drain(self.settings.grace_seconds)
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            await self._session.close()
            await self._pool.close()
            logger.info("callbacks stopped", extra={"pid": os.getpid()})

    async def claim(self, room: int) -> list[Callback]:
        assert self._pool is not None
        lease = self.settings.timeout_seconds + self.settings.lease_seconds
        async with self._pool.acquire() as connection:
            return await callbacks.claim_callbacks(connection, room, lease)

    def cut_short(self, callback: Callback) -> Outcome:
        return "sender stopped"  # due again at once

    def errored(self, callback: Callback, error: BaseException) -> Outcome:
        return f"sender error: {error!r}"

    async def work(self, callback: Callback) -> Outcome:
        """POST one callback; None when the receiver answered 2xx, else what went wrong."""
        assert self._session is not None
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
            async with self._session.post(
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

    async def record(self, claimed: list[Callback], outcomes: list[Outcome]) -> None:
        assert self._pool is not None
        delivered = [c.event_id for c, outcome in zip(claimed, outcomes, strict=True) if outcome is None]
        failures = [
            Failure(c.event_id, 0.0 if outcome == "sender stopped" else retry_delay(c.attempts, self.settings), outcome)
            for c, outcome in zip(claimed, outcomes, strict=True)
            if outcome is not None
        ]

        async def record(connection: asyncpg.Connection) -> list[int]:
            if delivered:
                await callbacks.delivered(connection, delivered)
            if failures:
                return await callbacks.retry_later(connection, failures, self.settings.max_age_seconds)
            return []

        abandoned = await with_retries(self._pool, record)
        for event_id in abandoned:
            logger.warning("callback abandoned", extra={"event_id": event_id})
        retries = [f.delay for f in failures if f.event_id not in abandoned]
        if retries and min(retries) < self.settings.poll_seconds and not self.stopping.is_set():
            asyncio.get_running_loop().call_later(min(retries), self.wake.set)
        self.delivered += len(delivered)
        self.failed += len(failures)
        self.abandoned += len(abandoned)
        async with self.progress:
            self.progress.notify_all()
