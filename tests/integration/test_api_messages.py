"""Tenant endpoints over real HTTP (aiohttp on loopback) against a real database: sending, batches,
reading, events, pagination, cancel, queues, idempotency and tenant isolation (SPEC §5)."""

import asyncio
import io

import pytest

from db import dispatch
from tests.integration.api import JSON, start_api


@pytest.fixture
async def api(conn, dsn):
    api = await start_api(conn, dsn)
    yield api
    await api.client.close()


async def test_send_read_and_follow_a_message(api):
    response = await api.send("acme", {"to": "+15551234567", "body": "Your code is 123456"})
    assert response.status == 202
    message = await response.json()
    assert message["status"] == "queued"
    assert message["to"] == "+15551234567"
    assert message["from"] == "55501"  # the short code: its route is the longest match
    assert message["destination"] == "US-SC"
    assert message["segments"] == 1 and message["encoding"] == "GSM-7"
    assert message["created_at"] and message["expires_at"] and message["send_at"] is None

    read = await api.client.get(f"/v1/messages/{message['id']}", headers=api.tenant("acme"))
    assert read.status == 200
    assert await read.json() == message

    events = await (await api.client.get(f"/v1/messages/{message['id']}/events", headers=api.tenant("acme"))).json()
    assert [event["status"] for event in events["events"]] == ["queued"]


async def test_send_names_sender_destination_schedule_and_validity(api):
    response = await api.send(
        "acme",
        {
            "to": "+15551234567",
            "body": "ünïcode ✓",
            "from": "+15550100001",
            "send_at": "2099-01-01T00:00:00Z",
            "validity_seconds": 60,
        },
    )
    assert response.status == 400  # more than 35 days ahead
    assert (await response.json())["error"]["details"]["field"] == "send_at"

    response = await api.send(
        "acme", {"to": "+15551234567", "body": "ünïcode ✓", "from": "+15550100001", "validity_seconds": 60}
    )
    message = await response.json()
    assert response.status == 202
    assert (message["from"], message["destination"], message["encoding"]) == ("+15550100001", "US-LC", "UCS-2")


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"body": "hi"}, 400, "invalid_request", "to"),
        ({"to": 15551234567, "body": "hi"}, 400, "invalid_request", "to"),
        ({"to": "+1555", "body": "hi"}, 400, "invalid_request", "to"),
        ({"to": "+15551234567", "body": ""}, 400, "invalid_request", "body"),
        ({"to": "+15551234567", "body": "x" * 1601}, 400, "invalid_request", "body"),
        ({"to": "+15551234567", "body": "hi", "colour": "red"}, 400, "invalid_request", "colour"),
        ({"to": "+15551234567", "body": "hi", "from": "+19999999999"}, 400, "invalid_request", "from"),
        ({"to": "+15551234567", "body": "hi", "destination": "NOPE"}, 404, "unknown_destination", "destination"),
        ({"to": "+33612345678", "body": "hi"}, 404, "unknown_destination", "to"),
        ({"to": "+15551234567", "body": "hi", "send_at": "tomorrow"}, 400, "invalid_request", "send_at"),
        ({"to": "+15551234567", "body": "hi", "send_at": "2026-01-01T00:00:00"}, 400, "invalid_request", "send_at"),
        ({"to": "+15551234567", "body": "hi", "validity_seconds": True}, 400, "invalid_request", "validity_seconds"),
        ({"to": "+15551234567", "body": "hi", "validity_seconds": 10**12}, 400, "invalid_request", "validity_seconds"),
        ({"to": "+15551234567", "body": "hi", "validity_seconds": 0}, 400, "invalid_request", "validity_seconds"),
        ({"to": "+15551234567", "body": "hi", "status_callback": "ftp://x"}, 400, "invalid_request", "status_callback"),
        ({"to": "+15551234567", "body": "a\u0000b"}, 400, "invalid_request", "body"),
    ],
)
async def test_bad_messages_get_precise_errors(api, body, status, code, field):
    response = await api.send("acme", body)
    assert response.status == status
    error = (await response.json())["error"]
    assert (error["code"], error["details"]["field"]) == (code, field)
    assert error["message"] and error["retryable"] is False


@pytest.mark.parametrize(
    ("data", "headers", "status", "code"),
    [
        (b"{not json", JSON, 400, "invalid_request"),
        (b'["a list"]', JSON, 400, "invalid_request"),
        (b'{"to": "\xff\xfe", "body": "x"}', JSON, 400, "invalid_request"),
        (b'{"to": "\\ud800", "body": "x"}', JSON, 400, "invalid_request"),
        (b'{"to": "+15551234567", "body": "hi"}', {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        (b'{"body": "' + b"x" * (17 << 20) + b'"}', JSON, 413, "payload_too_large"),
    ],
)
async def test_malformed_bodies_get_4xx(api, data, headers, status, code):
    response = await api.client.post("/v1/messages", data=io.BytesIO(data), headers={**api.tenant("acme"), **headers})
    assert response.status == status
    assert (await response.json())["error"]["code"] == code


async def test_authentication(api):
    body = {"to": "+15551234567", "body": "hi"}
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer fl_wrong"}):
        response = await api.client.post("/v1/messages", json=body, headers=headers)
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "unauthorized"
    response = await api.client.get("/v1/admin/routes", headers=api.tenant("acme"))
    assert response.status == 403


async def test_unknown_routes_and_methods_answer_json(api):
    response = await api.client.get("/v1/nothing-here")
    assert response.status == 404 and (await response.json())["error"]["code"] == "not_found"
    response = await api.client.delete("/v1/messages", headers=api.tenant("acme"))
    assert response.status == 405 and (await response.json())["error"]["code"] == "method_not_allowed"


async def test_tenant_isolation(api):
    message = await (await api.send("acme", {"to": "+15551234567", "body": "mine"})).json()
    for method, path in (
        ("GET", f"/v1/messages/{message['id']}"),
        ("GET", f"/v1/messages/{message['id']}/events"),
        ("POST", f"/v1/messages/{message['id']}/cancel"),
    ):
        response = await api.client.request(method, path, headers=api.tenant("globex"))
        assert response.status == 404, path
        assert (await response.json())["error"]["code"] == "not_found"
    listing = await (await api.client.get("/v1/messages", headers=api.tenant("globex"))).json()
    assert listing["messages"] == []
    queues = await (await api.client.get("/v1/queues", headers=api.tenant("globex"))).json()
    assert queues["queues"] == []


async def test_pagination_newest_first_with_filters(api):
    ids = []
    for index in range(5):
        ids.append((await (await api.send("acme", {"to": "+15551234567", "body": f"m{index}"})).json())["id"])
    await api.send("acme", {"to": "+15551234567", "body": "other", "from": "+15550100001"})
    seen, token = [], None
    while True:
        query = {"page_size": "2", "destination": "US-SC", **({"page_token": token} if token else {})}
        page = await (await api.client.get("/v1/messages", params=query, headers=api.tenant("acme"))).json()
        seen += [message["id"] for message in page["messages"]]
        token = page["next_page_token"]
        if token is None:
            break
    assert seen == ids[::-1]
    response = await api.client.get("/v1/messages", params={"status": "lost"}, headers=api.tenant("acme"))
    assert response.status == 400
    assert (await response.json())["error"]["details"]["field"] == "status"
    queued = await (await api.client.get("/v1/messages?status=queued", headers=api.tenant("acme"))).json()
    assert len(queued["messages"]) == 6


async def test_batch_partial_failure_one_result_per_item(api, conn):
    items = [
        {"to": "+15551234567", "body": "ok 1"},
        {"to": "+1555", "body": "bad number"},
        "not an object",
        {"to": "+15551234567", "body": "ok 2", "idempotency_key": "k-1"},
        {"to": "+15551234567", "body": "ok 2", "idempotency_key": "k-1"},
        {"to": "+15551234567", "body": "different", "idempotency_key": "k-1"},
    ]
    response = await api.client.post("/v1/messages/batch", json={"messages": items}, headers=api.tenant("acme"))
    assert response.status == 200
    result = await response.json()
    assert (result["accepted"], result["rejected"]) == (3, 3)
    results = result["results"]
    assert [item["index"] for item in results] == list(range(6))
    assert [item["status"] for item in results] == [202, 400, 400, 202, 202, 422]
    assert results[1]["error"]["details"]["field"] == "messages[1].to"
    assert results[2]["error"]["details"]["field"] == "messages[2]"
    assert results[4]["replayed"] is True and results[4]["message"]["id"] == results[3]["message"]["id"]
    assert results[5]["error"]["code"] == "idempotency_mismatch"
    count = conn.execute("SELECT count(*) FROM fairlane.messages").fetchone()[0]
    assert count == 2  # nothing of the bad items was written


async def test_batch_limits(api):
    for body in ({"messages": []}, {"messages": [{"to": "+15551234567", "body": "x"}] * 1001}, {"messages": "x"}):
        response = await api.client.post("/v1/messages/batch", json=body, headers=api.tenant("acme"))
        assert response.status == 400
        assert (await response.json())["error"]["details"]["field"] == "messages"


async def test_idempotency_replay_and_mismatch(api, conn):
    body = {"to": "+15551234567", "body": "once"}
    first = await api.send("acme", body, **{"Idempotency-Key": "order-42"})
    again = await api.send("acme", body, **{"Idempotency-Key": "order-42"})
    assert first.status == again.status == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (await first.json())["id"] == (await again.json())["id"]
    other_tenant = await api.send("globex", body, **{"Idempotency-Key": "order-42"})
    assert (await other_tenant.json())["id"] != (await first.json())["id"]  # keys are per tenant
    mismatch = await api.send("acme", {**body, "body": "twice"}, **{"Idempotency-Key": "order-42"})
    assert mismatch.status == 422
    assert (await mismatch.json())["error"]["code"] == "idempotency_mismatch"
    empty = await api.send("acme", body, **{"Idempotency-Key": ""})
    assert empty.status == 400


async def test_concurrent_requests_with_one_key_make_one_message(api, conn):
    body = {"to": "+15551234567", "body": "exactly once"}
    responses = await asyncio.gather(*(api.send("acme", body, **{"Idempotency-Key": "same"}) for _ in range(20)))
    bodies = [await response.json() for response in responses]
    assert [response.status for response in responses] == [202] * 20, bodies
    ids = {body["id"] for body in bodies}
    assert len(ids) == 1
    assert conn.execute("SELECT count(*) FROM fairlane.messages").fetchone()[0] == 1


async def test_queue_overflow_is_429_with_retry_after(conn, dsn):
    # US-LC: 10 segments/s shared by acme's set; max_drain_seconds 2 lets about 20 segments queue
    api = await start_api(
        conn,
        dsn,
        destinations=[
            {"code": "US-SC", "gateway": "sim", "rate": 100},
            {"code": "US-LC", "gateway": "sim", "rate": 10, "max_drain_seconds": 2},
            {"code": "GB", "gateway": "sim", "rate": 50},
            {"code": "GB-LDN", "gateway": "sim", "rate": 5},
        ],
    )
    try:
        body = {"to": "+15551234567", "body": "x", "from": "+15550100001"}
        statuses = [(await api.send("acme", body)).status for _ in range(20)]
        assert statuses == [202] * 20
        overflow = await api.send("acme", body)
        assert overflow.status == 429
        error = (await overflow.json())["error"]
        assert error["code"] == "queue_overflow" and error["retryable"] is True
        assert int(overflow.headers["Retry-After"]) >= 1
        other_queue = await api.send("acme", {"to": "+15551234567", "body": "x"})  # the short code's queue
        assert other_queue.status == 202
    finally:
        await api.client.close()


async def test_request_rate_limit_is_429_rate_limited_per_tenant(conn, dsn):
    api = await start_api(conn, dsn, tenant_rate=0.001)  # one request, then one per 1,000 s
    try:
        assert (await api.client.get("/v1/queues", headers=api.tenant("globex"))).status == 200
        limited = await api.client.get("/v1/queues", headers=api.tenant("globex"))
        assert limited.status == 429
        error = (await limited.json())["error"]
        assert (error["code"], error["retryable"]) == ("rate_limited", True)
        assert limited.headers["Retry-After"] == "1"
        assert (await api.client.get("/v1/queues", headers=api.tenant("acme"))).status == 200  # per tenant
    finally:
        await api.client.close()


async def test_cancel_then_not_cancelable(api, conn):
    message = await (await api.send("acme", {"to": "+15551234567", "body": "stop me"})).json()
    response = await api.client.post(f"/v1/messages/{message['id']}/cancel", headers=api.tenant("acme"))
    assert response.status == 200
    assert (await response.json())["status"] == "canceled"
    again = await api.client.post(f"/v1/messages/{message['id']}/cancel", headers=api.tenant("acme"))
    assert again.status == 409
    assert (await again.json())["error"]["code"] == "not_cancelable"
    depth = conn.execute("SELECT queued_count, queued_segments FROM fairlane.queues").fetchone()
    assert depth == (0, 0)
    events = await (await api.client.get(f"/v1/messages/{message['id']}/events", headers=api.tenant("acme"))).json()
    assert [event["status"] for event in events["events"]] == ["queued", "canceled"]


async def test_cancel_races_a_claim_exactly_one_wins(api, conn, dsn):
    """Cancels and a dispatcher's claim of the same messages, concurrently: every message ends either
    canceled (its cancel answered 200) or claimed (its cancel answered 409), and the queue's counters
    still match its rows."""
    import asyncpg

    conn.execute("UPDATE fairlane.destinations SET rate = 100000, burst = 100000")
    items = [{"to": "+15551234567", "body": f"race {index}"} for index in range(200)]
    batch = await (
        await api.client.post("/v1/messages/batch", json={"messages": items}, headers=api.tenant("acme"))
    ).json()
    ids = [item["message"]["id"] for item in batch["results"]]
    destination = conn.execute("SELECT id FROM fairlane.destinations WHERE code = 'US-SC'").fetchone()[0]
    connection = await asyncpg.connect(dsn)

    async def claim_all():
        claimed = []
        while batch_claimed := (await dispatch.claim(connection, destination, 7, 60)).messages:
            claimed += [message.message_id for message in batch_claimed]
            await asyncio.sleep(0)
        return claimed

    async def cancel(message_id):
        response = await api.client.post(f"/v1/messages/{message_id}/cancel", headers=api.tenant("acme"))
        return message_id, response.status

    try:
        claimed, *cancels = await asyncio.gather(claim_all(), *(cancel(message_id) for message_id in ids))
    finally:
        await connection.close()
    won = {int(message_id) for message_id, status in cancels if status == 200}
    lost = {int(message_id) for message_id, status in cancels if status == 409}
    assert won | lost == {int(message_id) for message_id in ids}
    assert won.isdisjoint(claimed)
    assert lost == set(claimed) - won
    statuses = dict(conn.execute("SELECT id, status FROM fairlane.messages").fetchall())
    assert all(statuses[message_id] == "canceled" for message_id in won)
    assert all(statuses[message_id] == "sending" for message_id in lost)
    counters = conn.execute("SELECT queued_count FROM fairlane.queues").fetchone()[0]
    assert counters == sum(1 for status in statuses.values() if status == "queued") == 0


async def test_queues_show_depth_portion_and_drain(api):
    for _ in range(3):
        await api.send("acme", {"to": "+15551234567", "body": "x" * 1530})  # 10 segments each
    queues = (await (await api.client.get("/v1/queues", headers=api.tenant("acme"))).json())["queues"]
    assert len(queues) == 1
    queue = queues[0]
    assert (queue["destination"], queue["sender"], queue["depth"]) == ("US-SC", "55501", 3)
    assert queue["portion"] == 100  # alone on US-SC: all of its 100 segments/s
    assert queue["queued_segments"] == 30
    assert queue["projected_drain_seconds"] == pytest.approx(0.3)
    assert queue["admission"] == "open"


async def test_a_replay_returns_the_original_even_when_the_rules_would_now_refuse_it(api, conn):
    first = await api.send("acme", {"to": "+15551234567", "body": "once"}, **{"Idempotency-Key": "k-replay"})
    original = await first.json()
    conn.execute("DELETE FROM fairlane.routes")  # the route that resolved it is gone
    again = await api.send("acme", {"to": "+15551234567", "body": "once"}, **{"Idempotency-Key": "k-replay"})
    assert again.status == 202 and (await again.json())["id"] == original["id"]
    without_key = await api.send("acme", {"to": "+15551234567", "body": "once"})
    assert without_key.status == 404  # the same request, new: no route now


async def test_a_refused_first_use_of_a_key_does_not_poison_a_valid_later_row(api):
    items = [
        {"to": "+1555", "body": "bad", "idempotency_key": "z"},
        {"to": "+15551234567", "body": "good", "idempotency_key": "z"},
        {"to": "+15551234567", "body": "good", "idempotency_key": "z"},
    ]
    result = await (
        await api.client.post("/v1/messages/batch", json={"messages": items}, headers=api.tenant("acme"))
    ).json()
    assert [item["status"] for item in result["results"]] == [400, 202, 202]
    assert result["results"][2]["replayed"] is True
    assert result["results"][1]["message"]["id"] == result["results"][2]["message"]["id"]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b'{"to": "+15551234567", "body": "x", "validity_seconds": NaN}', None),
        (b'{"to": "+15551234567", "body": "x", "validity_seconds": Infinity}', None),
        (b"[" * 100_000 + b"]" * 100_000, None),
    ],
)
async def test_non_standard_json_is_400(api, data, field):
    response = await api.client.post("/v1/messages", data=data, headers={**api.tenant("acme"), **JSON})
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_request"


async def test_bad_headers_and_query_parameters_are_400(api):
    body = {"to": "+15551234567", "body": "x"}
    for key in ("a\tb", "k\xa0x"):
        response = await api.send("acme", body, **{"Idempotency-Key": key})
        assert response.status == 400
        assert (await response.json())["error"]["details"]["field"] == "Idempotency-Key"
    response = await api.client.post(
        "/v1/messages/batch", json={"messages": [body]}, headers={**api.tenant("acme"), "Idempotency-Key": "b"}
    )
    assert response.status == 400
    response = await api.client.get("/v1/messages", params={"destination": "US\x00"}, headers=api.tenant("acme"))
    assert response.status == 400 and (await response.json())["error"]["details"]["field"] == "destination"


async def test_health_readiness_and_metrics(api):
    assert (await api.client.get("/healthz")).status == 200
    ready = await api.client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["status"] == "ready"
    assert (await api.client.get("/metrics")).status == 401
    assert (await api.client.get("/metrics", headers=api.tenant("acme"))).status == 403
    await api.send("acme", {"to": "+15551234567", "body": "x"})
    await api.send("acme", {"to": "+1555", "body": "x"})
    text = await (await api.client.get("/metrics", headers=api.admin)).text()
    assert 'fairlane_messages_accepted_total{destination="US-SC",tenant="acme"} 1.0' in text
    assert 'fairlane_messages_rejected_total{code="invalid_request",tenant="acme"} 1.0' in text
    assert 'fairlane_queue_depth{destination="US-SC",tenant="acme"} 1.0' in text
