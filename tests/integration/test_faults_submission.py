"""A submission whose database connection breaks while it runs (docs/decisions/0019): the API cannot know
whether it committed, so it answers 503 `outcome_unknown` naming the idempotency key to retry with (the
client's, or one the server made up), and a retry with that key returns the original message, never a second
one. The API talks to PostgreSQL through a proxy that cuts the connection right after the server committed the
submission (or right before it could), before the API hears of it."""

import pytest

from tests.integration.api import start_api
from tests.integration.faults import Proxy

BODY = {"to": "+15551234567", "body": "Your code is 123456"}


@pytest.fixture
def proxy(embedded_server):
    with Proxy(f"{embedded_server.host}/.s.PGSQL.{embedded_server.port}", postgres=True) as proxy:
        yield proxy


@pytest.fixture
async def api(conn, postgresql, proxy):
    api = await start_api(conn, proxy.dsn(postgresql.info.dbname))
    yield api
    await api.client.close()


def _held(conn, key):
    """The ids of the messages the database holds with idempotency key `key`."""
    return [row[0] for row in conn.execute("SELECT id FROM fairlane.messages WHERE idempotency_key = %s", (key,))]


async def _unknown(response):
    assert response.status == 503, await response.text()
    error = (await response.json())["error"]
    assert error["code"] == "outcome_unknown" and error["retryable"], error
    assert "Retry-After" in response.headers
    return error


async def test_submission_cut_after_commit_answers_outcome_unknown_and_the_retry_replays(api, proxy, conn):
    proxy.cut_after_commit("submit_json")
    error = await _unknown(await api.send("acme", BODY, **{"Idempotency-Key": "otp-1"}))
    assert error["details"]["idempotency_key"] == "otp-1" and "otp-1" in error["message"]
    [held] = _held(conn, "otp-1")  # it did commit

    again = await api.send("acme", BODY, **{"Idempotency-Key": "otp-1"})
    assert again.status == 202 and again.headers["Idempotent-Replayed"] == "true"
    message = await again.json()
    assert (message["id"], message["idempotency_key"]) == (str(held), "otp-1")
    found = await (await api.client.get("/v1/messages?idempotency_key=otp-1", headers=api.tenant("acme"))).json()
    assert [m["id"] for m in found["messages"]] == [str(held)] and found["next_page_token"] is None
    assert _held(conn, "otp-1") == [held]


async def test_a_request_without_a_key_gets_one_to_retry_with(api, proxy, conn):
    proxy.cut_after_commit("submit_json")
    error = await _unknown(await api.send("acme", BODY))
    key = error["details"]["idempotency_key"]
    assert key.startswith("auto-")
    [held] = _held(conn, key)
    again = await api.send("acme", BODY, **{"Idempotency-Key": key})
    assert again.status == 202 and (await again.json())["id"] == str(held)
    assert _held(conn, key) == [held]


async def test_submission_cut_before_commit_is_written_by_the_retry(api, proxy, conn):
    proxy.cut_before_commit("submit_json")
    await _unknown(await api.send("acme", BODY, **{"Idempotency-Key": "otp-2"}))
    assert _held(conn, "otp-2") == []  # rolled back: the retry writes it, once
    again = await api.send("acme", BODY, **{"Idempotency-Key": "otp-2"})
    assert again.status == 202 and "Idempotent-Replayed" not in again.headers
    assert _held(conn, "otp-2") == [int((await again.json())["id"])]


async def test_a_batch_cut_after_commit_names_its_unknown_items(api, proxy, conn):
    items = [
        {**BODY, "idempotency_key": "batch-1"},
        {**BODY, "body": "no key of its own"},
        {**BODY, "to": 5},  # refused before the database: known, not listed
        {**BODY, "to": "+1555"},  # refused by the database's rules: reached it, so unknown
    ]
    proxy.cut_after_commit("submit_json")
    response = await api.client.post("/v1/messages/batch", json={"messages": items}, headers=api.tenant("acme"))
    error = await _unknown(response)
    unknown = error["details"]["items"]
    assert [item["index"] for item in unknown] == [0, 1, 3]
    assert unknown[0]["idempotency_key"] == "batch-1" and unknown[1]["idempotency_key"].startswith("auto-")
    keys = {item["index"]: item["idempotency_key"] for item in unknown}
    held = {index: _held(conn, key) for index, key in keys.items()}
    assert len(held[0]) == 1 and len(held[1]) == 1 and held[3] == []

    again = [{**item, "idempotency_key": keys[index]} if index in keys else item for index, item in enumerate(items)]
    response = await api.client.post("/v1/messages/batch", json={"messages": again}, headers=api.tenant("acme"))
    assert response.status == 200
    results = (await response.json())["results"]
    assert [result["status"] for result in results] == [202, 202, 400, 400]
    assert results[0]["replayed"] and results[1]["replayed"]
    assert [int(results[i]["message"]["id"]) for i in (0, 1)] == [held[0][0], held[1][0]]
    assert {index: _held(conn, key) for index, key in keys.items()} == held


async def test_every_message_carries_its_idempotency_key(api, conn):
    """No fault: a request without a key gets one made up, shown in the answer, on the message and found by it."""
    response = await api.send("acme", BODY)
    assert response.status == 202
    message = await response.json()
    key = message["idempotency_key"]
    assert key.startswith("auto-") and len(key) > 20
    shown = await (await api.client.get(f"/v1/messages/{message['id']}", headers=api.tenant("acme"))).json()
    assert shown["idempotency_key"] == key
    listed = await (await api.client.get("/v1/messages", headers=api.tenant("acme"))).json()
    assert listed["messages"][0]["idempotency_key"] == key
    found = await (await api.client.get(f"/v1/messages?idempotency_key={key}", headers=api.tenant("acme"))).json()
    assert found["messages"] == [shown]
    # another tenant's key finds nothing, nor does an unknown one
    other = await (await api.client.get(f"/v1/messages?idempotency_key={key}", headers=api.tenant("globex"))).json()
    assert other["messages"] == []
    with_client_key = await (await api.send("acme", BODY, **{"Idempotency-Key": "mine-1"})).json()
    assert with_client_key["idempotency_key"] == "mine-1"
    response = await api.client.get("/v1/messages?idempotency_key=mine-1&status=queued", headers=api.tenant("acme"))
    assert response.status == 400 and (await response.json())["error"]["details"]["field"] == "status"
    response = await api.client.get("/v1/messages?idempotency_key=", headers=api.tenant("acme"))
    assert response.status == 400 and (await response.json())["error"]["details"]["field"] == "idempotency_key"
