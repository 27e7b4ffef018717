"""Receipts always authenticated (issue 13, docs/decisions/0017): every gateway has a receipts token (made up
when not given, shown once), a forged receipt changes nothing, a receipt is refused before its body is read,
and a receipt reaches only the messages of the gateway that sent them."""

import asyncio

import pytest

from service.api.auth import GATEWAY_TOKENS
from tests.integration.api import start_api
from tests.integration.fixtures import apply_config, submit

TOKEN = "receipts-token-of-carrier-one"
CONFIG = {
    "tenant_sets": [{"name": "s"}],
    "gateways": [
        {"name": "one", "kind": "http", "url": "http://127.0.0.1:9/messages", "receipts_token": TOKEN},
        {"name": "two", "kind": "http", "url": "http://127.0.0.1:9/messages"},
    ],
    "destinations": [{"code": "ONE", "gateway": "one", "rate": 10}, {"code": "TWO", "gateway": "two", "rate": 10}],
    "tenants": [{"name": "t", "tenant_set": "s", "senders": [{"address": "+15550100001", "type": "long_code"}]}],
}


@pytest.fixture
async def api(conn, dsn):
    api = await start_api(conn, dsn)
    apply_config(conn, CONFIG)
    yield api
    await api.client.close()


def _sent(conn, destination: str, provider_id: str) -> int:
    """A message of `destination` the gateway has accepted (sent, with the provider's id)."""
    message_id = submit(conn, tenant="t", recipient="+15551234567", body="hi", destination=destination)
    conn.execute(
        "SELECT fairlane.finish_v1(ARRAY[%s]::bigint[], ARRAY['sent'], ARRAY[NULL::text], ARRAY[NULL::text], "
        "ARRAY[%s], ARRAY[1], ARRAY[NULL::jsonb], ARRAY['queued'], NULL, clock_timestamp())",
        (message_id, provider_id),
    )
    return message_id


def _status(conn, message_id: int) -> str:
    return conn.execute("SELECT status FROM fairlane.messages WHERE id = %s", (message_id,)).fetchone()[0]


async def test_a_forged_receipt_changes_nothing(api, conn):
    message_id = _sent(conn, "ONE", "p-1")
    for headers, status in (
        ({}, 401),
        ({"Authorization": "Bearer "}, 401),
        ({"Authorization": "Bearer " + "x" * 32}, 403),
        ({"Authorization": "Basic " + TOKEN}, 401),
    ):
        for body in ({"id": str(message_id), "status": "undelivered"}, {"provider_id": "p-1", "status": "undelivered"}):
            response = await api.client.post("/v1/gateways/one/receipts", json=body, headers=headers)
            assert response.status == status, (headers, body)
    assert _status(conn, message_id) == "sent"
    assert conn.execute("SELECT count(*) FROM fairlane.callbacks").fetchone()[0] == 0
    right = {"Authorization": f"Bearer {TOKEN}"}
    response = await api.client.post(
        "/v1/gateways/one/receipts", json={"provider_id": "p-1", "status": "delivered"}, headers=right
    )
    assert response.status == 200 and (await response.json())["status"] == "delivered"


async def test_a_receipt_reaches_only_its_own_gateways_messages(api, conn):
    one = _sent(conn, "ONE", "same-provider-id")
    created = await api.client.put(
        "/v1/admin/gateways/two", json={"kind": "http", "url": "http://127.0.0.1:9/x"}, headers=api.admin
    )
    assert created.status == 200 and "receipts_token" not in await created.json()  # made up before: not shown
    rotated = await api.client.put(
        "/v1/admin/gateways/two",
        json={"kind": "http", "url": "http://127.0.0.1:9/x", "receipts_token": "token-of-gateway-two-0123"},
        headers=api.admin,
    )
    assert rotated.status == 200 and "receipts_token" not in await rotated.json()  # the operator's own: not shown
    two = {"Authorization": "Bearer token-of-gateway-two-0123"}
    for body in (
        {"provider_id": "same-provider-id", "status": "undelivered"},
        {"id": str(one), "status": "undelivered"},
    ):
        response = await api.client.post("/v1/gateways/two/receipts", json=body, headers=two)
        assert response.status == 404, await response.text()
    assert _status(conn, one) == "sent"


async def test_every_gateway_has_a_token_shown_once(api, conn):
    response = await api.client.put(
        "/v1/admin/gateways/three", json={"kind": "http", "url": "http://127.0.0.1:9/x"}, headers=api.admin
    )
    created = await response.json()
    assert (
        response.status == 201 and created["receipts_token"].startswith("rt_") and len(created["receipts_token"]) > 40
    )
    shown = await (await api.client.get("/v1/admin/gateways/three", headers=api.admin)).json()
    assert "receipts_token" not in shown
    again = await api.client.put(
        "/v1/admin/gateways/three", json={"kind": "http", "url": "http://127.0.0.1:9/y"}, headers=api.admin
    )
    assert again.status == 200 and "receipts_token" not in await again.json()
    (stored,) = conn.execute("SELECT receipts_token FROM fairlane.gateways WHERE name = 'three'").fetchone()
    assert stored == created["receipts_token"]  # a change that names no token keeps it
    assert conn.execute("SELECT count(*) FROM fairlane.gateways WHERE receipts_token IS NULL").fetchone()[0] == 0


async def test_a_receipts_token_is_set_or_rotated(api, conn):
    message_id = _sent(conn, "ONE", "p-9")
    receipt = {"provider_id": "p-9", "status": "delivered"}

    async def post(token: str) -> int:
        headers = {"Authorization": f"Bearer {token}"}
        return (await api.client.post("/v1/gateways/one/receipts", json=receipt, headers=headers)).status

    assert await post(TOKEN) == 200  # cached here now
    response = await api.client.post("/v1/admin/gateways/one/receipts-token/rotate", headers=api.admin)
    rotated = (await response.json())["receipts_token"]
    assert response.status == 200 and rotated.startswith("rt_") and rotated != TOKEN  # made up: shown once
    assert "receipts_token" not in await (await api.client.get("/v1/admin/gateways/one", headers=api.admin)).json()
    assert await post(TOKEN) == 403 and await post(rotated) == 200  # at once, in this process
    # set to what a carrier already sends (as after an upgrade), through `fairlane apply`'s code path
    carrier = "what-the-carrier-sends-0123"
    gateways = [{**CONFIG["gateways"][0], "receipts_token": carrier}]
    assert apply_config(conn, {"gateways": gateways}).receipts_tokens == {}  # given: never printed
    api.client.app[GATEWAY_TOKENS].forget("one")  # another process's change: seen here within 5 s
    assert await post(rotated) == 403 and await post(carrier) == 200
    assert _status(conn, message_id) == "delivered"
    missing = await api.client.post("/v1/admin/gateways/nope/receipts-token/rotate", headers=api.admin)
    assert missing.status == 404


async def _raw_post(port: int, path: str, headers: dict[str, str], length: int | None) -> tuple[bytes, bool]:
    """Send a request's head and the first part of a body of `length` bytes (a kilobyte), or of a chunked body
    (`length` None: one chunk of 100 KiB), then read the answer without sending the rest; returns the status
    line and whether the server closed the connection (within 10 s)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    framing = "Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}"
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{framing}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    body = b"[" * 1024 if length is not None else b"%x\r\n" % (100 << 10) + b"[" * (100 << 10) + b"\r\n"
    writer.write(head.encode() + body)
    await writer.drain()
    try:
        async with asyncio.timeout(10):
            status = await reader.readline()
            while await reader.readline() not in (b"\r\n", b""):
                pass
        try:
            async with asyncio.timeout(10):
                await reader.read()  # the answer's body, then the end of the stream if the server closes
        except TimeoutError:
            return status, False  # still open: the server waits for the rest of the body
        return status, reader.at_eof()
    finally:
        writer.close()


async def test_a_large_receipt_is_refused_before_it_is_read(api, conn):
    port = api.client.server.port
    sixteen_mib = 16 << 20
    status, closed = await _raw_post(port, "/v1/gateways/nope/receipts", {}, sixteen_mib)
    assert status.startswith(b"HTTP/1.1 401") and closed
    forged = {"Authorization": "Bearer " + "x" * 32}
    status, closed = await _raw_post(port, "/v1/gateways/nope/receipts", forged, sixteen_mib)
    assert status.startswith(b"HTTP/1.1 404") and closed
    status, closed = await _raw_post(port, "/v1/gateways/one/receipts", forged, sixteen_mib)
    assert status.startswith(b"HTTP/1.1 403") and closed
    right = {"Authorization": f"Bearer {TOKEN}"}
    status, closed = await _raw_post(port, "/v1/gateways/one/receipts", right, sixteen_mib)
    assert status.startswith(b"HTTP/1.1 413") and closed  # even with the token: receipts are small
    status, closed = await _raw_post(port, "/v1/gateways/one/receipts", right, None)
    assert status.startswith(b"HTTP/1.1 413") and closed  # chunked: no more than 64 KiB read
