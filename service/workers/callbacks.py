"""Status callback sender (`fairlane callbacks`): POSTs each status change of a message whose message or
tenant has a status_callback URL, at least once, signed the Standard Webhooks way (SPEC §4).

A callbacks row is written with its event (fairlane.record_events_v1), which NOTIFYs fairlane_callbacks. The
sender LISTENs (polling as a fallback) and runs the worker loop (service/workers/loop.py): lease due rows with
SKIP LOCKED, post them concurrently (bounded) and record each batch: 2xx means delivered; any other answer, a
timeout or a connection error means another attempt after an exponential backoff with jitter, until
`max_age_seconds` after the row was created, when the row is abandoned. Stateless: run as many as needed.
One way to start (`run`), one to stop (`stop`, also on SIGTERM/SIGINT): stop claiming, let in-flight posts
finish for up to a grace period, put the rest back.

Tenants share it fairly (docs/decisions/0017): the claim takes tenants in turn, a tenant has at most
`per_tenant_in_flight` posts in flight, and each (tenant, endpoint) has a circuit breaker: after
`circuit_failures` failures in a row (timeouts, connection errors, 5xx, 429, refused addresses) its pending
callbacks wait `circuit_seconds` (doubling while it keeps failing) instead of holding slots, so one tenant's
dead endpoint costs the others nothing.

Tenant URLs cannot reach the operator's network: a URL must be https (http only when the operator allows
it), an IP address in it must be public (or in `callbacks.allow_networks`), a name is resolved by
`GuardedResolver`, which refuses unless every address it resolves to is allowed, and the connection goes to
the addresses it checked (no second lookup, so no DNS rebinding). Redirects are not followed. The error kept
in `callbacks.last_error` is the status code and its standard reason, or a fixed reason: never the remote
body.

What a receiver gets (the body is the same on every attempt; the timestamp and signature are per attempt):

    POST <status_callback>
    content-type: application/json
    webhook-id: 123            the event id in decimal, equal to data.event_id: deduplicate on it
    webhook-timestamp: 1767225600          this attempt's time, Unix seconds
    webhook-signature: v1,<base64 HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")>
                       key = base64-decode of the tenant's signing secret without its "whsec_" prefix; during a
                       rotation's grace period a second "v1,..." for the previous secret follows, space-separated

    {"type": "message.status", "timestamp": "2026-01-01T00:00:00.000000Z",
     "data": {"event_id": "123", "sequence": 2, "message_id": "45", "status": "sent", "at": "<as timestamp>",
              "to": "+15551234567", "from": "55501", "destination": "US-SC", "segments": 1,
              "error_code": null, "error_message": null, "detail": {"provider_id": "p-1"}}}
"""

import asyncio
import logging
import os
import random
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from http import HTTPStatus

import aiohttp
import asyncpg
from aiohttp.abc import AbstractResolver, ResolveResult
from standardwebhooks.webhooks import Webhook

from db import callbacks
from db import pool as db_pool
from db.callbacks import Callback, Failure
from db.pool import DURABLE
from db.transaction import with_retries
from service.model import urls
from service.model.bounded import BoundedDict
from service.workers.loop import BatchLoop, Listener

logger = logging.getLogger(__name__)
NOTIFY_CHANNEL = "fairlane_callbacks"
Lookup = Callable[[str, int], Awaitable[list[str]]]
"""Resolves a host name to its addresses (text); the default asks the system (getaddrinfo)."""


@dataclass(frozen=True)
class CallbackSettings:
    batch_size: int = 100
    max_in_flight: int = 200
    per_tenant_in_flight: int = 20  # a tenant's posts in flight at once (in this process)
    timeout_seconds: float = 10.0
    lease_seconds: float = 30.0  # how long a claimed row stays leased beyond the post timeout
    grace_seconds: float = 10.0
    poll_seconds: float = 1.0
    backoff_seconds: float = 5.0  # the first retry comes after about this long, then twice as long each time
    max_backoff_seconds: float = 3600.0
    max_age_seconds: float = 86400.0  # a row failing after this long is abandoned
    circuit_failures: int = 5  # failures in a row that open an endpoint's circuit
    circuit_seconds: float = 30.0  # how long it stays open the first time (then twice as long, up to the cap)
    max_circuit_seconds: float = 600.0
    policy_seconds: float = 1.0  # how often the operator's callbacks settings are read again

    def __post_init__(self) -> None:
        for field in fields(self):
            if not getattr(self, field.name) > 0:
                raise ValueError(f"{field.name} must be positive, got {getattr(self, field.name)!r}")


@dataclass(frozen=True)
class Failed:
    """A post that did not get a 2xx: the error to keep (a fixed text), whether it says the endpoint is unhealthy
    (for its circuit), when to try again (None: the usual backoff), and whether it was attempted at all (a post
    skipped while its endpoint's circuit is open or probed does not spend an attempt)."""

    error: str
    unhealthy: bool = True
    delay: float | None = None
    attempted: bool = True


Outcome = Failed | None
"""None when the receiver answered 2xx."""
STOPPED = Failed("sender stopped", unhealthy=False, delay=0.0)  # due again at once


def retry_delay(attempts: int, settings: CallbackSettings) -> float:
    """Seconds before the next attempt of a callback that has failed `attempts` times: backoff × 2^(attempts-1)
    capped at max_backoff, with equal jitter (between half and all of it)."""
    delay = min(settings.max_backoff_seconds, settings.backoff_seconds * 2.0 ** min(attempts - 1, 40))
    return delay / 2 + random.uniform(0, delay / 2)


def http_error(status: int) -> str:
    """A non-2xx answer as kept and logged: the code and its standard reason (the receiver's own reason phrase
    and body are the receiver's words, never shown)."""
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


class SigningFailed(Exception):
    """A callback that cannot be signed (the tenant is gone, or its secret is not valid base64)."""


class AddressRefused(OSError):
    """A name resolved to an address callbacks may not reach (aiohttp reports it as a DNS error)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def system_lookup(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver for callbacks: looks a name up once and returns its addresses only when every one of
    them is allowed (public, or in the operator's allow-list), else raises `AddressRefused`. aiohttp connects to
    exactly the addresses returned here, so what was checked is what is reached."""

    def __init__(self, policy: Callable[[], urls.Policy], lookup: Lookup) -> None:
        self._policy = policy
        self._lookup = lookup

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            found = await self._lookup(host, port)
        except OSError:
            raise
        except Exception as error:  # a lookup must fail as an OSError for aiohttp to report it
            raise OSError(f"lookup failed: {type(error).__name__}") from None
        addresses: list[urls.Address] = []
        for text in found:
            address = urls.parse_address(text.split("%", 1)[0])
            if address is None:
                raise AddressRefused("name resolves to something that is not an IP address")
            addresses.append(address)
        try:
            urls.resolved_allowed(addresses, self._policy())
        except urls.Refused as refused:
            raise AddressRefused(str(refused)) from None
        return [
            {
                "hostname": host,
                "host": str(address),
                "port": port,
                "family": socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
            for address in dict.fromkeys(addresses)
        ]

    async def close(self) -> None:
        pass


@dataclass
class Circuit:
    """One (tenant, endpoint)'s health: failures in a row, and while open, until when (monotonic)."""

    failures: int = 0
    open_until: float = 0.0
    open_seconds: float = 0.0
    probing: bool = False  # half open: one post in flight decides


class CallbackSender(BatchLoop[Callback, Outcome]):
    def __init__(
        self, dsn: str, settings: CallbackSettings = CallbackSettings(), *, lookup: Lookup | None = None
    ) -> None:
        # the loop asks for whole batches; how many may be in flight, in all and per tenant, is claim()'s to say
        super().__init__(
            "callbacks", batch_size=settings.batch_size, max_in_flight=2**31, poll_seconds=settings.poll_seconds
        )
        self.dsn = dsn
        self.settings = settings
        self.listener = Listener(dsn, NOTIFY_CHANNEL, self._notified, settings.poll_seconds)
        self.listening = self.listener.listening
        self._lookup = lookup or system_lookup
        self._pool: asyncpg.Pool | None = None
        self._session: aiohttp.ClientSession | None = None
        self._policy = urls.Policy()
        self._policy_at = -1e9
        self._posting = 0
        self._by_tenant: Counter[int] = Counter()
        self._held_back: set[int] = set()  # tenants at their limit at (or after) the last claim
        self._full = False  # every slot was taken at the last claim
        self._circuits: BoundedDict[tuple[int, str], Circuit] = BoundedDict(10_000)
        # counters and test hooks: `progress` is notified after each batch's outcomes are committed
        self.progress = asyncio.Condition()
        self.delivered = 0
        self.failed = 0
        self.abandoned = 0

    def _notified(self, payload: str | None) -> None:
        self.wake.set()

    async def run(self) -> None:
        # synchronous commit, whatever the server's default: a claim's commit flushes every commit before it, so
        # a status is announced only once the database holds it durably (docs/decisions/0019)
        self._pool = await db_pool.create(self.dsn, min_size=1, max_size=4, server_settings=DURABLE)
        connector = aiohttp.TCPConnector(
            limit=0, use_dns_cache=False, resolver=GuardedResolver(lambda: self._policy, self._lookup)
        )
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout_seconds), connector=connector
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
        free = min(room, self.settings.max_in_flight - self._posting)
        busy = {tenant: count for tenant, count in self._by_tenant.items() if count > 0}
        self._full = free < room
        self._held_back = {tenant for tenant, count in busy.items() if count >= self.settings.per_tenant_in_flight}
        if free <= 0:
            return []
        lease = self.settings.timeout_seconds + self.settings.lease_seconds
        async with self._pool.acquire() as connection:
            if time.monotonic() - self._policy_at > self.settings.policy_seconds:
                found = await callbacks.policy(connection)
                self._policy = urls.Policy.of(found.allow_networks, found.allow_http)
                self._policy_at = time.monotonic()
            claimed = await callbacks.claim_callbacks(connection, free, lease, self.settings.per_tenant_in_flight, busy)
        for callback in claimed:
            self._posting += 1
            self._by_tenant[callback.tenant_id] += 1
        # a tenant this claim brought to its limit waits for its own posts (woken once half of them are done),
        # not for the poll: else a tenant with a backlog got one claim's worth per poll interval
        limit = self.settings.per_tenant_in_flight
        self._held_back |= {c.tenant_id for c in claimed if self._by_tenant[c.tenant_id] >= limit}
        self._full = self._full or self._posting >= self.settings.max_in_flight
        return claimed

    def cut_short(self, callback: Callback) -> Outcome:
        return STOPPED

    def errored(self, callback: Callback, error: BaseException) -> Outcome:
        return Failed(f"sender error: {type(error).__name__}", unhealthy=False)

    async def work(self, callback: Callback) -> Outcome:
        try:
            return await self._post(callback)
        finally:
            self._posting -= 1
            tenant = callback.tenant_id
            self._by_tenant[tenant] -= 1
            if self._by_tenant[tenant] <= 0:
                del self._by_tenant[tenant]
            # room again for what was held back, claimed once half of its slots are free (not once per post)
            if tenant in self._held_back and self._by_tenant[tenant] <= self.settings.per_tenant_in_flight // 2:
                self._held_back.discard(tenant)
                self.wake.set()
            if self._full and self._posting <= self.settings.max_in_flight // 2:
                self._full = False
                self.wake.set()

    async def _post(self, callback: Callback) -> Outcome:
        """POST one callback, through its endpoint's circuit; None when the receiver answered 2xx."""
        key = (callback.tenant_id, urls.endpoint(callback.url))
        now = time.monotonic()
        circuit = self._circuits.get(key)  # only endpoints that failed lately have one
        if circuit is not None and (circuit.open_until > now or circuit.probing):
            # not attempted: due again once the circuit may close (after the probe's answer, at the latest its
            # timeout), without spending an attempt
            wait = max(circuit.open_until - now, self.settings.timeout_seconds if circuit.probing else 1.0)
            return Failed(
                f"circuit open after {circuit.failures} failures in a row", unhealthy=False, delay=wait, attempted=False
            )
        if circuit is not None and circuit.failures >= self.settings.circuit_failures:
            circuit.probing = True  # half open: this post decides
        try:
            outcome = await self._send(callback)
        finally:
            if circuit is not None:
                circuit.probing = False
        if outcome is None or not outcome.unhealthy:
            self._circuits.pop(key, None)  # the endpoint answered
            return outcome
        circuit = self._circuits.setdefault(key, Circuit())
        circuit.failures += 1
        now = time.monotonic()
        if circuit.open_until > now:  # another post opened it meanwhile
            return Failed(outcome.error, delay=circuit.open_until - now)
        if circuit.failures >= self.settings.circuit_failures:
            circuit.open_seconds = min(
                self.settings.max_circuit_seconds,
                circuit.open_seconds * 2 if circuit.open_seconds else self.settings.circuit_seconds,
            )
            circuit.open_until = time.monotonic() + circuit.open_seconds
            await self._postpone(callback.tenant_id, key[1], circuit.open_seconds)
            return Failed(outcome.error, delay=circuit.open_seconds)
        return outcome

    async def _postpone(self, tenant_id: int, endpoint: str, seconds: float) -> None:
        assert self._pool is not None
        try:
            async with self._pool.acquire() as connection:
                postponed = await callbacks.postpone_endpoint(connection, tenant_id, endpoint, seconds)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as error:
            logger.warning("circuit not recorded", extra={"tenant_id": tenant_id, "error": type(error).__name__})
            return
        logger.warning(
            "callback circuit open",
            extra={
                "tenant_id": tenant_id,
                "endpoint": urls.redacted(endpoint),
                "seconds": seconds,
                "postponed": postponed,
            },
        )

    async def _send(self, callback: Callback) -> Outcome:
        assert self._session is not None
        started = time.monotonic()
        where = {"event_id": callback.event_id, "url": urls.redacted(callback.url), "attempts": callback.attempts}
        webhook_id = str(callback.event_id)
        timestamp = datetime.now(UTC).replace(microsecond=0)
        outcome: Failed
        try:
            signature = " ".join(
                Webhook(secret).sign(webhook_id, timestamp, callback.payload) for secret in callback.signing_secrets
            )
        except Exception:  # binascii.Error (not base64), EmptyWebhookSecretError: the secret, never the URL
            signature = ""
        try:
            if not signature:
                raise SigningFailed(
                    "the tenant's signing secret is not valid" if callback.signing_secrets
                    else "the tenant has no signing secret"
                )  # fmt: skip
            urls.check_url(callback.url, self._policy)
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
            outcome = Failed(http_error(status), unhealthy=status >= 500 or status == 429)
        except SigningFailed as failed:
            outcome = Failed(str(failed), unhealthy=False)
        except urls.Refused as refused:
            outcome = Failed(f"refused: {refused}")
        except ValueError:  # aiohttp's InvalidURL among others
            outcome = Failed("not a valid URL", unhealthy=False)
        except TimeoutError:
            outcome = Failed(f"no answer within {self.settings.timeout_seconds} s")
        except aiohttp.ClientConnectorDNSError as error:
            os_error = error.os_error
            reason = f"refused: {os_error.reason}" if isinstance(os_error, AddressRefused) else "name did not resolve"
            outcome = Failed(reason)
        except aiohttp.ClientSSLError:
            outcome = Failed("TLS handshake failed")
        except aiohttp.ClientConnectorError:
            outcome = Failed("connection failed")
        except aiohttp.ServerDisconnectedError:
            outcome = Failed("connection closed before an answer")
        except (aiohttp.ClientError, OSError) as error:
            outcome = Failed(f"request failed: {type(error).__name__}")
        seconds = round(time.monotonic() - started, 3)
        logger.warning("callback failed", extra={**where, "error": outcome.error, "seconds": seconds})
        return outcome

    async def record(self, claimed: list[Callback], outcomes: list[Outcome]) -> None:
        assert self._pool is not None
        delivered = [c.event_id for c, outcome in zip(claimed, outcomes, strict=True) if outcome is None]
        failures = [
            Failure(c.event_id, retry_delay(c.attempts, self.settings) if outcome.delay is None else outcome.delay,
                    outcome.error, outcome.attempted)
            for c, outcome in zip(claimed, outcomes, strict=True)
            if outcome is not None
        ]  # fmt: skip

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
