"""Status callbacks (SPEC §4): the sender against a real PostgreSQL and a real HTTP receiver on 127.0.0.1.
Waits are on conditions (requests received, outcomes recorded), never on the clock."""

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict
from standardwebhooks.webhooks import Webhook

from db import callbacks
from db.callbacks import Failure
from service.workers.callbacks import CallbackSender, CallbackSettings
from tests.integration.fixtures import BASIC, apply_basic, submit

FAST = CallbackSettings(backoff_seconds=0.01, poll_seconds=0.2)
# the receivers listen on loopback over plain http: the operator's allow-list lets callbacks reach them
LOOPBACK = {"allow_networks": ["127.0.0.0/8"], "allow_http": True}


class Receiver:
    """An HTTP receiver that records every request and answers with `statuses` in order, then 200; while
    `gate` is clear, answers wait."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.requests: list[tuple[CIMultiDict[str], bytes]] = []
        self.changed = asyncio.Condition()
        self.gate = asyncio.Event()
        self.gate.set()
        app = web.Application()
        app.router.add_post("/cb", self.handle)
        self.server = TestServer(app, host="127.0.0.1")

    @property
    def url(self) -> str:
        return str(self.server.make_url("/cb"))

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        async with self.changed:
            self.requests.append((request.headers.copy(), body))
            self.changed.notify_all()
        await self.gate.wait()
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status, text="ok" if status < 300 else "try later")

    async def wait_for_requests(self, count: int) -> None:
        async with asyncio.timeout(10), self.changed:
            await self.changed.wait_for(lambda: len(self.requests) >= count)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    async with receiver.server:
        try:
            yield receiver
        finally:
            receiver.gate.set()


@asynccontextmanager
async def running(sender: CallbackSender) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(sender.run())
    try:
        async with asyncio.timeout(10):
            await sender.listening.wait()
        yield task
    finally:
        sender.stop()
        async with asyncio.timeout(10):
            await task


async def until(sender: CallbackSender, predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(10), sender.progress:
        await sender.progress.wait_for(predicate)


def _row(conn, event_id: int) -> dict:
    cursor = conn.execute(
        """SELECT attempts, delivered_at IS NOT NULL AS delivered, abandoned_at IS NOT NULL AS abandoned,
                  last_error, extract(epoch FROM next_attempt_at - now())::float8 AS due_in
           FROM fairlane.callbacks WHERE event_id = %s""",
        (event_id,),
    )
    return dict(zip([c.name for c in cursor.description], cursor.fetchone(), strict=True))


def _events(conn, message_id: int) -> list[int]:
    return [
        r[0]
        for r in conn.execute("SELECT id FROM fairlane.message_events WHERE message_id = %s ORDER BY id", (message_id,))
    ]


def _secret(conn, tenant: str) -> str:
    return conn.execute("SELECT signing_secret FROM fairlane.tenants WHERE name = %s", (tenant,)).fetchone()[0]


def _with_tenant_callback(conn, url: str) -> None:
    tenants = [{**t, "status_callback": url} if t["name"] == "acme" else t for t in BASIC["tenants"]]
    apply_basic(conn, tenants=tenants, callbacks=LOOPBACK)


async def test_signed_post_per_status_change(conn, dsn, receiver):
    _with_tenant_callback(conn, receiver.url)
    message_id = submit(conn, tenant="acme", recipient="+15551234567", body="hello")
    submit(conn, tenant="globex", recipient="+15551234568", body="no callback for globex")
    assert conn.execute("SELECT count(*) FROM fairlane.callbacks").fetchone()[0] == 1
    secret = _secret(conn, "acme")
    sender = CallbackSender(dsn, FAST)
    async with running(sender):
        await receiver.wait_for_requests(1)
        conn.execute("SELECT fairlane.cancel_v1(tenant_id, id) FROM fairlane.messages WHERE id = %s", (message_id,))
        await receiver.wait_for_requests(2)
        await until(sender, lambda: sender.delivered == 2)
    queued, canceled = _events(conn, message_id)
    bodies = []
    for (headers, body), event_id in zip(receiver.requests, (queued, canceled), strict=True):
        assert headers["Content-Type"] == "application/json"
        assert headers["webhook-id"] == str(event_id)
        bodies.append(Webhook(secret).verify(body, headers))
        # the signature by hand: v1,base64(HMAC-SHA256(base64decode(secret minus whsec_), id.timestamp.body))
        key = base64.b64decode(secret.removeprefix("whsec_") + "==")
        signed = f"{event_id}.{headers['webhook-timestamp']}.".encode() + body
        assert (
            headers["webhook-signature"] == "v1," + base64.b64encode(hmac.digest(key, signed, hashlib.sha256)).decode()
        )
    first, second = bodies
    assert first["type"] == "message.status"
    assert first["timestamp"] == first["data"]["at"] and first["timestamp"].endswith("Z")
    assert first["data"] == {
        "event_id": str(queued),
        "sequence": 1,
        "message_id": str(message_id),
        "status": "queued",
        "at": first["timestamp"],
        "to": "+15551234567",
        "from": "55501",
        "destination": "US-SC",
        "segments": 1,
        "error_code": None,
        "error_message": None,
        "detail": None,
    }
    assert second["data"]["event_id"] == str(canceled)
    assert (second["data"]["sequence"], second["data"]["status"]) == (2, "canceled")
    assert second["data"]["detail"] == {"reason": "canceled by the tenant"}
    assert _row(conn, queued)["delivered"] and _row(conn, canceled)["delivered"]
    assert _row(conn, queued)["attempts"] == 1


async def test_retry_after_an_error_sends_the_same_webhook(conn, dsn, receiver):
    apply_basic(conn, callbacks=LOOPBACK)
    receiver.statuses = [500]
    message_id = submit(conn, tenant="acme", recipient="+15551234567", body="hello", status_callback=receiver.url)
    (event_id,) = _events(conn, message_id)
    sender = CallbackSender(dsn, FAST)
    async with running(sender):
        await until(sender, lambda: sender.delivered == 1)
    assert (sender.failed, sender.abandoned) == (1, 0)
    (first_headers, first_body), (second_headers, second_body) = receiver.requests
    assert first_headers["webhook-id"] == second_headers["webhook-id"] == str(event_id)
    assert first_body == second_body
    Webhook(_secret(conn, "acme")).verify(second_body, second_headers)
    row = _row(conn, event_id)
    assert (row["attempts"], row["delivered"], row["abandoned"]) == (2, True, False)
    assert row["last_error"] == "HTTP 500 Internal Server Error"  # the code and its reason, never the body


async def test_failing_row_older_than_a_day_is_abandoned(conn, dsn, receiver, unused_tcp_port):
    apply_basic(conn, callbacks=LOOPBACK)
    receiver.statuses = [500] * 5
    old = submit(conn, tenant="acme", recipient="+15551234567", body="old", status_callback=receiver.url)
    fresh = submit(
        conn,
        tenant="acme",
        recipient="+15551234568",
        body="fresh",
        status_callback=f"http://127.0.0.1:{unused_tcp_port}/",
    )
    (old_event,), (fresh_event,) = _events(conn, old), _events(conn, fresh)
    conn.execute(
        "UPDATE fairlane.callbacks SET created_at = now() - interval '25 hours' WHERE event_id = %s", (old_event,)
    )
    sender = CallbackSender(dsn)  # default backoff: the fresh row's retry is seconds away
    async with running(sender):
        await until(sender, lambda: sender.failed == 2)
    assert sender.abandoned == 1
    abandoned = _row(conn, old_event)
    assert (abandoned["attempts"], abandoned["delivered"], abandoned["abandoned"]) == (1, False, True)
    assert abandoned["last_error"] == "HTTP 500 Internal Server Error"
    retried = _row(conn, fresh_event)
    assert (retried["attempts"], retried["delivered"], retried["abandoned"]) == (1, False, False)
    assert retried["last_error"] == "connection failed"
    assert 1.0 < retried["due_in"] <= 5.0  # 5 s backoff with jitter: between half and all of it
    assert len(receiver.requests) == 1


async def test_timeout_is_a_failure(conn, dsn, receiver):
    apply_basic(conn, callbacks=LOOPBACK)
    receiver.gate.clear()
    message_id = submit(conn, tenant="acme", recipient="+15551234567", body="hello", status_callback=receiver.url)
    sender = CallbackSender(dsn, CallbackSettings(timeout_seconds=0.2))
    async with running(sender):
        await until(sender, lambda: sender.failed == 1)
    row = _row(conn, _events(conn, message_id)[0])
    assert (row["attempts"], row["delivered"], row["last_error"]) == (1, False, "no answer within 0.2 s")


async def test_stop_when_idle_is_prompt(dsn):
    sender = CallbackSender(dsn, CallbackSettings(poll_seconds=60))
    async with running(sender) as task:
        pass
    assert task.done() and task.exception() is None


async def test_stop_lets_an_in_flight_post_finish(conn, dsn, receiver):
    apply_basic(conn, callbacks=LOOPBACK)
    receiver.gate.clear()
    message_id = submit(conn, tenant="acme", recipient="+15551234567", body="hello", status_callback=receiver.url)
    sender = CallbackSender(dsn, CallbackSettings(poll_seconds=60))
    task = asyncio.create_task(sender.run())
    await receiver.wait_for_requests(1)
    sender.stop()
    # not a synchronisation wait: run() must still be waiting for the unanswered post after a while
    done, _ = await asyncio.wait({task}, timeout=0.2)
    assert not done
    receiver.gate.set()
    async with asyncio.timeout(10):
        await task
    assert (sender.delivered, sender.failed) == (1, 0)
    assert _row(conn, _events(conn, message_id)[0])["delivered"]


async def test_stop_after_the_grace_period_puts_posts_back(conn, dsn, receiver):
    apply_basic(conn, callbacks=LOOPBACK)
    receiver.gate.clear()
    message_id = submit(conn, tenant="acme", recipient="+15551234567", body="hello", status_callback=receiver.url)
    sender = CallbackSender(dsn, CallbackSettings(grace_seconds=0.1, poll_seconds=60))
    task = asyncio.create_task(sender.run())
    await receiver.wait_for_requests(1)
    sender.stop()
    async with asyncio.timeout(10):
        await task
    row = _row(conn, _events(conn, message_id)[0])
    assert (row["attempts"], row["delivered"], row["last_error"]) == (1, False, "sender stopped")
    assert row["due_in"] <= 0


async def test_claim_leases_rows(conn, dsn):
    apply_basic(conn, callbacks=LOOPBACK)
    message_id = submit(conn, tenant="acme", recipient="+15551234567", body="hello", status_callback="http://x/cb")
    connection = await asyncpg.connect(dsn)
    try:
        (claimed,) = await callbacks.claim_callbacks(connection, 10, 60)
        assert (claimed.url, claimed.attempts, claimed.signing_secrets) == ("http://x/cb", 1, (_secret(conn, "acme"),))
        assert json.loads(claimed.payload)["data"]["message_id"] == str(message_id)
        assert await callbacks.claim_callbacks(connection, 10, 60) == []  # leased
        assert await callbacks.retry_later(connection, [Failure(claimed.event_id, 0.0, "HTTP 503")], 86400) == []
        (again,) = await callbacks.claim_callbacks(connection, 10, 60)
        assert (again.event_id, again.attempts, again.payload) == (claimed.event_id, 2, claimed.payload)
        await callbacks.delivered(connection, [claimed.event_id])
        await callbacks.retry_later(connection, [Failure(claimed.event_id, 0.0, "late")], 0.001)
    finally:
        await connection.close()
    row = _row(conn, claimed.event_id)
    assert (row["delivered"], row["abandoned"], row["last_error"]) == (True, False, "HTTP 503")
