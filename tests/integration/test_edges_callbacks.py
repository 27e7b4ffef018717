"""Tenant-safe status callbacks (issue 13, docs/decisions/0017), tried as a hostile tenant would: URLs that
name the operator's network are refused at submission and configuration (SQL and HTTP alike), and what gets
past that (a name resolving to loopback, a name resolving to a public and a private address, a redirect to
loopback, rows whose URL the operator's allow-list no longer covers) never reaches a listening socket on
loopback; the remote body never lands in `last_error`; tenants share the sender fairly (one tenant's endpoint
that never answers costs another tenant nothing) and a failing endpoint's circuit opens."""

import asyncio
import ipaddress
import json
import time
from collections import Counter

import asyncpg
import psycopg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from db import callbacks
from db.errors import FairlaneError
from service.model import urls
from service.workers.callbacks import CallbackSender, CallbackSettings, Circuit, system_lookup
from tests.integration.api import start_api
from tests.integration.fixtures import BASIC, apply_basic, error_detail, submit

LOOPBACK_ONLY_2 = {"allow_networks": ["127.0.0.2/32"], "allow_http": True}

REFUSED = [
    "https://127.0.0.1/hook",
    "https://[::1]/hook",
    "https://2130706433/hook",
    "https://0x7f000001/hook",
    "https://0177.0.0.1/hook",
    "https://127.1/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://[64:ff9b::7f00:1]/hook",
    "https://[64:ff9b::10.1.2.3]/hook",
    "https://169.254.169.254/latest/meta-data/",
    "https://10.1.2.3/hook",
    "https://172.16.0.1/hook",
    "https://192.168.1.1/hook",
    "https://100.64.0.1/hook",
    "https://0.0.0.0/hook",
    "https://[fe80::1]/hook",
    "https://[fd00::1]/hook",
    "https://[fe80::1%25eth0]/hook",
    "https://224.0.0.1/hook",
    "https://localhost/hook",
    "https://LOCALHOST./hook",
    "https://db.localhost/hook",
    "https://metadata/computeMetadata/v1/",
    "https://metadata.google.internal/computeMetadata/v1/",
    "https://printer.local/hook",
    "http://hooks.example.com/hook",
    "https://user:secret@hooks.example.com/hook",
    "ftp://hooks.example.com/hook",
    "https://hooks.example.com:99999/hook",
    "https://ex\u00e4mple.com/hook",
]


def _trap_server():
    """A listening socket on 127.0.0.1 that counts the connections it accepts."""
    accepted = []

    async def connected(reader, writer):
        accepted.append(writer.get_extra_info("peername"))
        writer.close()

    return accepted, asyncio.start_server(connected, "127.0.0.1", 0)


@pytest.mark.parametrize("url", REFUSED)
def test_non_public_callback_urls_are_refused_at_submission(conn, url):
    apply_basic(conn)
    with pytest.raises(psycopg.Error) as raised:
        submit(conn, tenant="acme", recipient="+15551234567", body="hi", status_callback=url)
    detail = error_detail(raised.value)
    assert raised.value.sqlstate == "FL400"
    assert (detail["code"], detail["field"]) == ("invalid_request", "status_callback")
    assert "status_callback" in raised.value.diag.message_primary
    # and as a tenant's own callback, through `fairlane apply`'s code path
    tenants = [{**t, "status_callback": url} if t["name"] == "acme" else t for t in BASIC["tenants"]]
    with pytest.raises(FairlaneError) as refused:
        apply_basic(conn, tenants=tenants)
    assert (refused.value.code, refused.value.field) == ("invalid_request", "status_callback")


def test_public_https_urls_and_the_allow_list_pass(conn):
    apply_basic(conn)
    for url in (
        "https://hooks.example.com/a?b=c",
        "https://93.184.216.34:8443/x",
        "https://[2606:4700::1]/x",
        "https://[64:ff9b::5db8:d822]/x",  # NAT64 of 93.184.216.34
    ):
        submit(conn, tenant="acme", recipient="+15551234567", body="hi", status_callback=url)
    with pytest.raises(psycopg.Error):
        submit(conn, tenant="acme", recipient="+15551234567", body="hi", status_callback="http://10.9.8.7/x")
    apply_basic(conn, callbacks={"allow_networks": ["10.9.0.0/16"], "allow_http": True})
    submit(conn, tenant="acme", recipient="+15551234567", body="hi", status_callback="http://10.9.8.7/x")
    submit(conn, tenant="acme", recipient="+15551234567", body="hi", status_callback="http://hooks.corp/x")
    with pytest.raises(psycopg.Error):  # the allow-list holds 10.9/16, nothing else
        submit(conn, tenant="acme", recipient="+15551234567", body="hi", status_callback="http://10.10.0.1/x")


def test_the_sql_and_the_sender_share_one_list_of_non_public_networks(conn):
    listed = conn.execute("SELECT unnest(fairlane.non_public_networks_v1())::text").fetchall()
    assert [ipaddress.ip_network(row[0]) for row in listed] == list(urls.NON_PUBLIC)


async def test_refused_at_submission_over_http_naming_the_field(conn, dsn):
    api = await start_api(conn, dsn)
    try:
        for url in ("https://169.254.169.254/", "https://2130706433/", "http://hooks.example.com/"):
            response = await api.send("acme", {"to": "+15551234567", "body": "hi", "status_callback": url})
            error = (await response.json())["error"]
            assert response.status == 400 and error["code"] == "invalid_request", error
            assert error["details"] == {"field": "status_callback", "value": url}
        response = await api.client.put(
            "/v1/admin/tenants/acme",
            json={"tenant_set": "enterprise", "status_callback": "https://[::1]/hook"},
            headers=api.admin,
        )
        assert response.status == 400 and (await response.json())["error"]["details"]["field"] == "status_callback"
        response = await api.client.put(
            "/v1/admin/callbacks", json={"allow_networks": ["not a network"]}, headers=api.admin
        )
        assert response.status == 400
        assert (await response.json())["error"]["details"]["field"] == "allow_networks[0]"
    finally:
        await api.client.close()


async def test_nothing_reaches_a_loopback_listener(conn, dsn):
    """What submission cannot see is refused at send time, and a listening socket on 127.0.0.1 receives zero
    connections: a name that resolves to loopback; a name resolving to a public and a loopback address; a
    redirect from an allowed receiver (on 127.0.0.2, the only network the operator allows) to loopback; rows
    accepted while the operator allowed loopback, after the allow-list narrowed; and rows whose URL names
    loopback in forms submission refuses (as an older release may have stored them)."""
    accepted, starting = _trap_server()
    trap = await starting
    port = trap.sockets[0].getsockname()[1]
    redirected = []

    async def redirect(request):
        redirected.append(request.path)
        return web.Response(status=302, headers={"Location": f"http://127.0.0.1:{port}/stolen"}, text="go there")

    app = web.Application()
    app.router.add_post("/hook", redirect)
    receiver = TestServer(app, host="127.0.0.2")
    await receiver.start_server()
    allowed = f"http://127.0.0.2:{receiver.port}/hook"
    names = {
        "loopback.hooks.example.com": ["127.0.0.1"],
        "mixed.hooks.example.com": ["93.184.216.34", "127.0.0.1"],
        "v6.hooks.example.com": ["::1"],
    }

    async def lookup(host, port):
        return names[host] if host in names else await system_lookup(host, port)

    try:
        apply_basic(conn, callbacks={"allow_networks": ["127.0.0.0/8"], "allow_http": True})
        urls_then = [f"http://127.0.0.1:{port}/then", f"http://localhost:{port}/then"]
        for url in urls_then:  # accepted while the operator allowed loopback
            submit(conn, tenant="acme", recipient="+15551234567", body="hi", status_callback=url)
        apply_basic(conn, callbacks=LOOPBACK_ONLY_2)
        for url in (
            f"http://loopback.hooks.example.com:{port}/dns",
            f"http://mixed.hooks.example.com:{port}/dns",
            f"http://v6.hooks.example.com:{port}/dns",
            allowed,
        ):
            submit(conn, tenant="acme", recipient="+15551234567", body="hi", status_callback=url)
        stored = [f"http://2130706433:{port}/x", f"http://127.1:{port}/x", f"http://[::ffff:127.0.0.1]:{port}/x"]
        for index, url in enumerate(stored):
            conn.execute(
                "INSERT INTO fairlane.callbacks (event_id, tenant_id, url, payload) "
                "SELECT -1 - %s, id, %s, '{}' FROM fairlane.tenants WHERE name = 'acme'",
                (index, url),
            )
        total = conn.execute("SELECT count(*) FROM fairlane.callbacks").fetchone()[0]
        assert total == 9
        sender = CallbackSender(dsn, CallbackSettings(poll_seconds=0.2, circuit_failures=100), lookup=lookup)
        task = asyncio.create_task(sender.run())
        try:
            async with asyncio.timeout(20), sender.progress:
                await sender.progress.wait_for(lambda: sender.failed >= total)
        finally:
            sender.stop()
            await asyncio.wait_for(task, 20)
    finally:
        await receiver.close()
        trap.close()
        await trap.wait_closed()
    assert accepted == [], accepted
    assert redirected == ["/hook"]  # the allowed receiver got its callback; its redirect was not followed
    errors = dict(conn.execute("SELECT url, last_error FROM fairlane.callbacks").fetchall())
    assert errors[allowed] == "HTTP 302 Found"
    assert errors[f"http://loopback.hooks.example.com:{port}/dns"] == (
        "refused: name resolves to 127.0.0.1, an address that is not public"
    )
    assert errors[f"http://mixed.hooks.example.com:{port}/dns"] == (
        "refused: name resolves to 127.0.0.1, an address that is not public"
    )
    assert (
        errors[f"http://v6.hooks.example.com:{port}/dns"]
        == "refused: name resolves to ::1, an address that is not public"
    )
    assert errors[f"http://127.0.0.1:{port}/then"] == "refused: address 127.0.0.1 is not public"
    assert errors[f"http://localhost:{port}/then"].startswith("refused: name resolves to ")
    for url in stored:
        assert errors[url].startswith("refused: "), (url, errors[url])


async def test_the_remote_body_and_reason_never_reach_last_error(conn, dsn):
    async def hostile(request):
        await request.read()
        return web.Response(status=500, reason="Forged\r\nreason", text="SECRET BODY\n2026-01-01 INFO forged line")

    app = web.Application()
    app.router.add_post("/hook", hostile)
    receiver = TestServer(app, host="127.0.0.1")
    await receiver.start_server()
    try:
        apply_basic(conn, callbacks={"allow_networks": ["127.0.0.0/8"], "allow_http": True})
        submit(
            conn, tenant="acme", recipient="+15551234567", body="hi", status_callback=str(receiver.make_url("/hook"))
        )
        sender = CallbackSender(dsn, CallbackSettings(poll_seconds=0.2))
        task = asyncio.create_task(sender.run())
        try:
            async with asyncio.timeout(20), sender.progress:
                await sender.progress.wait_for(lambda: sender.failed >= 1)
        finally:
            sender.stop()
            await asyncio.wait_for(task, 20)
    finally:
        await receiver.close()
    (error,) = conn.execute("SELECT last_error FROM fairlane.callbacks").fetchone()
    assert error == "HTTP 500 Internal Server Error"


class Hanging:
    """An endpoint that accepts connections and never answers; counts the connections open at once."""

    def __init__(self):
        self.open = 0
        self.most = 0
        self.server = None

    async def connected(self, reader, writer):
        self.open += 1
        self.most = max(self.most, self.open)
        try:
            await reader.read()  # until the sender gives up
        finally:
            self.open -= 1
            writer.close()

    async def start(self):
        self.server = await asyncio.start_server(self.connected, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/hook"


async def test_a_dead_endpoint_costs_other_tenants_nothing(conn, dsn):
    """Tenant A has 500 callbacks due to an endpoint that accepts connections and never answers; tenant B's
    callbacks, due after all of A's, still arrive within 2 s, and A never holds more than its share of slots."""
    hanging = Hanging()
    dead = await hanging.start()
    arrived: dict[str, float] = {}

    async def live(request):
        body = json.loads(await request.read())
        arrived[body["data"]["message_id"]] = time.monotonic()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", live)
    receiver = TestServer(app, host="127.0.0.1")
    await receiver.start_server()
    apply_basic(conn, callbacks={"allow_networks": ["127.0.0.0/8"], "allow_http": True})
    conn.execute(
        "INSERT INTO fairlane.outbox (tenant, recipient, body, status_callback) "
        "SELECT 'acme', '+1555' || lpad(i::text, 7, '0'), 'bulk', %s FROM generate_series(1, 500) i",
        (dead,),
    )
    settings = CallbackSettings(poll_seconds=0.2, grace_seconds=0.2)  # 200 in flight, 20 per tenant
    sender = CallbackSender(dsn, settings)
    task = asyncio.create_task(sender.run())
    try:
        async with asyncio.timeout(10):
            await sender.listening.wait()
            while hanging.most < settings.per_tenant_in_flight:  # A's first posts are hanging
                await asyncio.sleep(0.05)
        sent = {}
        for i in range(5):
            message_id = submit(
                conn,
                tenant="globex",
                recipient=f"+1555777000{i}",
                body="otp",
                status_callback=str(receiver.make_url("/hook")),
            )
            sent[str(message_id)] = time.monotonic()
        async with asyncio.timeout(10):
            while len(arrived) < len(sent):
                await asyncio.sleep(0.02)
    finally:
        sender.stop()
        await asyncio.wait_for(task, 30)
        await receiver.close()
        hanging.server.close()
    lags = [arrived[message_id] - at for message_id, at in sent.items()]
    assert max(lags) < 2.0, lags
    assert hanging.most == settings.per_tenant_in_flight


async def test_a_failing_endpoint_opens_its_circuit(conn, dsn):
    answers = []

    async def failing(request):
        answers.append(request.path)
        return web.Response(status=503)

    app = web.Application()
    app.router.add_post("/hook", failing)
    receiver = TestServer(app, host="127.0.0.1")
    await receiver.start_server()
    apply_basic(conn, callbacks={"allow_networks": ["127.0.0.0/8"], "allow_http": True})
    url = str(receiver.make_url("/hook"))
    conn.execute(
        "INSERT INTO fairlane.outbox (tenant, recipient, body, status_callback) "
        "SELECT 'acme', '+1555' || lpad(i::text, 7, '0'), 'bulk', %s FROM generate_series(1, 20) i",
        (url,),
    )
    settings = CallbackSettings(
        poll_seconds=0.1, backoff_seconds=0.01, per_tenant_in_flight=1, circuit_failures=5, circuit_seconds=60
    )
    sender = CallbackSender(dsn, settings)
    task = asyncio.create_task(sender.run())

    def waiting():
        return conn.execute(
            "SELECT count(*) FROM fairlane.callbacks WHERE next_attempt_at > now() + interval '50 seconds'"
        ).fetchone()[0]

    try:
        async with asyncio.timeout(20):
            while waiting() < 20:
                await asyncio.sleep(0.05)
    finally:
        sender.stop()
        await asyncio.wait_for(task, 20)
        await receiver.close()
    assert len(answers) == 5  # five failures in a row, then the endpoint rests; nothing else was posted
    errors = {row[0] for row in conn.execute("SELECT last_error FROM fairlane.callbacks WHERE attempts > 0")}
    assert "HTTP 503 Service Unavailable" in errors


async def _run_until_failed(dsn: str, count: int, prepare=lambda sender: None) -> None:
    """Run a callback sender until `count` posts have failed (and been recorded)."""
    sender = CallbackSender(dsn, CallbackSettings(poll_seconds=0.1))
    prepare(sender)
    task = asyncio.create_task(sender.run())
    try:
        async with asyncio.timeout(20), sender.progress:
            await sender.progress.wait_for(lambda: sender.failed >= count)
    finally:
        sender.stop()
        await asyncio.wait_for(task, 20)


async def test_a_malformed_signing_secret_is_said_so(conn, dsn):
    apply_basic(conn)
    conn.execute("UPDATE fairlane.tenants SET signing_secret = 'whsec_not*base64!' WHERE name = 'acme'")
    submit(conn, tenant="acme", recipient="+15551234567", body="hi", status_callback="https://hooks.example.com/x")
    await _run_until_failed(dsn, 1)
    (error,) = conn.execute("SELECT last_error FROM fairlane.callbacks").fetchone()
    assert error == "the tenant's signing secret is not valid"


async def test_posts_skipped_by_an_open_circuit_spend_no_attempt(conn, dsn):
    posted = []

    async def hook(request):
        posted.append(await request.read())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    receiver = TestServer(app, host="127.0.0.1")
    await receiver.start_server()
    try:
        apply_basic(conn, callbacks={"allow_networks": ["127.0.0.0/8"], "allow_http": True})
        url = str(receiver.make_url("/hook"))
        for i in range(3):
            submit(conn, tenant="acme", recipient=f"+155512345{i:02d}", body="hi", status_callback=url)
        (tenant_id,) = conn.execute("SELECT id FROM fairlane.tenants WHERE name = 'acme'").fetchone()

        def open_circuit(sender: CallbackSender) -> None:  # as five failures in a row would leave it
            open_for = 60.0
            sender._circuits[(tenant_id, urls.endpoint(url))] = Circuit(5, time.monotonic() + open_for, open_for)

        await _run_until_failed(dsn, 3, open_circuit)
    finally:
        await receiver.close()
    assert posted == []
    rows = conn.execute(
        "SELECT attempts, next_attempt_at > now() + interval '50 seconds', last_error FROM fairlane.callbacks"
    ).fetchall()
    assert rows == [(0, True, "circuit open after 5 failures in a row")] * 3


async def test_two_senders_claim_different_callbacks(conn, dsn):
    apply_basic(conn)
    conn.execute(
        "INSERT INTO fairlane.outbox (tenant, recipient, body, status_callback) "
        "SELECT t, '+1555' || lpad(i::text, 7, '0'), 'x', 'https://hooks.example.com/x' "
        "FROM unnest(ARRAY['acme', 'globex']) t, generate_series(1, 6) i"
    )
    first, second = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        async with first.transaction():  # the first claim's locks held while the second claims
            mine = await callbacks.claim_callbacks(first, 4, 30.0, 20, {})
            theirs = await callbacks.claim_callbacks(second, 4, 30.0, 20, {})
    finally:
        await first.close()
        await second.close()
    assert len(mine) == len(theirs) == 4
    assert not {c.event_id for c in mine} & {c.event_id for c in theirs}
    # each took the tenants in turn: two of each
    for claimed in (mine, theirs):
        assert sorted(Counter(c.tenant_id for c in claimed).values()) == [2, 2], claimed
