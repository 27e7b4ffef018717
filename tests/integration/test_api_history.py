"""Retention and usage over HTTP and in `fairlane apply`: PUT/GET /v1/admin/retention, `[retention]`, a
finished message past the retention answers 404 at once, GET /v1/usage per day."""

import datetime as dt

import pytest

from tests.integration.api import start_api
from tests.integration.fixtures import apply_config


@pytest.fixture
async def api(conn, dsn):
    api = await start_api(conn, dsn)
    yield api
    await api.client.close()


def _finish(conn, outcomes, at=None):
    """Claim US-SC's queued messages and complete them with `outcomes`, at `at` (default now)."""
    conn.execute("UPDATE fairlane.destinations SET rate = 1000, burst = 1000")
    destination = conn.execute("SELECT id FROM fairlane.destinations WHERE code = 'US-SC'").fetchone()[0]
    rows = conn.execute(
        "SELECT message_id, claim_id FROM fairlane.claim_v2(%s, %s, 30)", (destination, len(outcomes))
    ).fetchall()
    n = len(rows)
    conn.execute(
        "SELECT fairlane.complete_v1(%s, %s, %s, %s, %s, %s, %s, 5, %s)",
        (rows[0][1], [r[0] for r in rows], outcomes, [None] * n, [None] * n, [None] * n, [None] * n, at),
    )
    return [str(r[0]) for r in rows]


async def test_retention_over_http(api):
    response = await api.client.get("/v1/admin/retention", headers=api.admin)
    assert (response.status, await response.json()) == (200, {"finished_messages": "30d", "seconds": 2592000})
    response = await api.client.put("/v1/admin/retention", json={"finished_messages": "90m"}, headers=api.admin)
    assert (response.status, await response.json()) == (200, {"finished_messages": "90m", "seconds": 5400})
    for bad in ("30", "5s", "2x", 300, ""):
        response = await api.client.put("/v1/admin/retention", json={"finished_messages": bad}, headers=api.admin)
        error = (await response.json())["error"]
        assert (response.status, error["details"]["field"]) == (400, "finished_messages"), bad
    assert (await api.client.get("/v1/admin/retention", headers=api.tenant("acme"))).status == 403


def test_retention_in_the_configuration_file(conn):
    result = apply_config(conn, {"retention": {"finished_messages": "24h"}})
    assert result.changes == ["updated retention of finished messages: retention_seconds 2592000 -> 86400"]
    assert apply_config(conn, {"retention": {"finished_messages": "1d"}}).changes == []


async def test_a_message_past_the_retention_is_404_at_once(api, conn):
    sent = await (await api.send("acme", {"to": "+15551234567", "body": "old"})).json()
    [message_id] = _finish(conn, ["sent"], dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
    assert message_id == sent["id"]
    path = f"/v1/messages/{message_id}"
    assert (await api.client.get(path, headers=api.tenant("acme"))).status == 200
    conn.execute("UPDATE fairlane.settings SET retention_seconds = 3600")
    for url in (path, f"{path}/events"):
        response = await api.client.get(url, headers=api.tenant("acme"))
        assert response.status == 404, url
    listing = await (await api.client.get("/v1/messages", headers=api.tenant("acme"))).json()
    assert listing["messages"] == []


async def test_usage_per_day_outlives_the_messages(api, conn):
    for index in range(3):
        assert (await api.send("acme", {"to": "+15551234567", "body": f"m{index}"})).status == 202
    _finish(conn, ["sent", "sent", "failed"])
    today = dt.datetime.now(dt.UTC).date().isoformat()
    response = await api.client.get("/v1/usage", headers=api.tenant("acme"))
    body = await response.json()
    assert (response.status, body["to"]) == (200, today)
    rows = {
        (r["day"], r["destination"], r["sender"], r["status"]): (r["messages"], r["segments"]) for r in body["usage"]
    }
    assert rows == {(today, "US-SC", "55501", "sent"): (2, 2), (today, "US-SC", "55501", "failed"): (1, 1)}
    # other tenants see nothing of it; past days hold nothing
    assert (await (await api.client.get("/v1/usage", headers=api.tenant("globex"))).json())["usage"] == []
    old = await api.client.get("/v1/usage?from=2020-01-01&to=2020-01-31", headers=api.tenant("acme"))
    assert (await old.json())["usage"] == []
    for query, field in (
        ("from=yesterday", "from"),
        ("from=2026-02-01&to=2026-01-01", "from"),
        ("to=2026-13-01", "to"),
    ):
        response = await api.client.get(f"/v1/usage?{query}", headers=api.tenant("acme"))
        assert (response.status, (await response.json())["error"]["details"]["field"]) == (400, field), query
