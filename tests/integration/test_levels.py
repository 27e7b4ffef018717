"""Levels of service (docs/decisions/0020): inside a tenant's share its high-priority messages go first, bulk
keeps its minimum share, and another tenant's share does not move; `priority` over SQL (outbox and submit) and
HTTP, checked like every other field."""

import psycopg
import pytest

from tests.fairness import Queue, fairness_error, ideal_rates
from tests.integration.api import JSON, start_api
from tests.integration.claiming import backlog, setup
from tests.integration.fixtures import error_detail, submit

STEP = 0.05  # seconds between claims: the claim interval


def _destination(conn):
    return setup(
        conn,
        rate=100,
        tenant_sets=[("a", 1), ("b", 1)],
        tenants=[("ta", "a", 1, [("+15550000001", None)]), ("tb", "b", 1, [("+15550000002", None)])],
    )


def _run(conn, destination, start, seconds, *, passcodes_every=None):
    """Claims every STEP seconds of simulated time from `start` (seconds after now) for `seconds`, submitting one
    high-priority message for tenant ta every `passcodes_every` seconds just before the claim at that time.
    Returns (at, tenant, priority, segments) of what was claimed and {message id: submitted at}."""
    base = conn.execute("SELECT clock_timestamp() + interval '1 second'").fetchone()[0]
    claimed, submitted = [], {}
    for i in range(round(seconds / STEP)):
        now = round(start + i * STEP, 6)
        if passcodes_every and i % round(passcodes_every / STEP) == 0:
            submitted[submit(conn, tenant="ta", recipient="+15557654321", body="code 1234", priority="high")] = now
        at = conn.execute("SELECT %s::timestamptz + make_interval(secs => %s)", (base, now)).fetchone()[0]
        rows = conn.execute(
            """SELECT c.message_id, c.claim_id, c.tenant, m.priority, c.segments
               FROM fairlane.claim_v2(%s, 100, 30, %s) c JOIN fairlane.messages m ON m.id = c.message_id""",
            (destination, at),
        ).fetchall()
        if rows:
            ids = [r[0] for r in rows]
            n = len(ids)
            conn.execute(
                "SELECT fairlane.complete_v1(%s, %s, %s, %s, %s, %s, %s, 5, %s)",
                (rows[0][1], ids, ["sent"] * n, [None] * n, [None] * n, [None] * n, [None] * n, at),
            )
        claimed += [(now, r[0], r[2], r[3], r[4]) for r in rows]
    return claimed, submitted


def test_high_priority_goes_first_inside_the_tenants_share_and_bulk_keeps_its_minimum(conn):
    destination = _destination(conn)
    backlog(conn, "ta", "+15550000001", 3000, priority="bulk")
    backlog(conn, "tb", "+15550000002", 6000)
    # passcodes arrive five times a second beside ta's bulk campaign and tb's flood
    claimed, submitted = _run(conn, destination, 0, 10, passcodes_every=0.2)
    waits = sorted(at - submitted[message] for at, message, *_ in claimed if message in submitted)
    assert len(waits) == len(submitted) == 50
    assert waits[int(0.99 * len(waits))] <= STEP + 1e-9  # p99 within one claim interval
    shares = {"ta": 0, "tb": 0}
    for at, _, tenant, _, segments in claimed:
        if at >= 1:
            shares[tenant] += segments
    ideal = ideal_rates(100, [Queue("ta", "ta", "a"), Queue("tb", "tb", "b")], {"a": 1, "b": 1})
    assert fairness_error(shares, ideal) <= 0.05, shares  # tb's share unchanged by ta's levels
    # now ta's high level is backlogged too: high goes first, bulk keeps its 10 % of ta's share
    backlog(conn, "ta", "+15550000001", 3000, priority="high")
    claimed, _ = _run(conn, destination, 10, 10)
    levels = {0: 0, 2: 0}
    shares = {"ta": 0, "tb": 0}
    for at, _, tenant, priority, segments in claimed:
        if at >= 11:
            shares[tenant] += segments
            if tenant == "ta":
                levels[priority] += segments
    assert fairness_error(shares, ideal) <= 0.05, shares
    bulk = levels[2] / (levels[0] + levels[2])
    assert 0.09 <= bulk <= 0.13, levels
    # the view names the level each queue takes next
    assert conn.execute("SELECT tenant, level FROM fairlane.queue_scores ORDER BY tenant").fetchall() == [
        ("ta", "high"),
        ("tb", "normal"),
    ]


def test_without_lower_levels_waiting_high_takes_the_whole_share(conn):
    destination = _destination(conn)
    backlog(conn, "ta", "+15550000001", 2000, priority="high")
    backlog(conn, "tb", "+15550000002", 2000, priority="bulk")
    claimed, _ = _run(conn, destination, 0, 4)
    shares = {"ta": 0, "tb": 0}
    for at, _, tenant, _, segments in claimed:
        if at >= 1:
            shares[tenant] += segments
    # levels never cross tenants: tb's bulk keeps tb's half against ta's high
    ideal = ideal_rates(100, [Queue("ta", "ta", "a"), Queue("tb", "tb", "b")], {"a": 1, "b": 1})
    assert fairness_error(shares, ideal) <= 0.05, shares


def test_priority_over_sql_is_stored_shown_and_checked(conn):
    _destination(conn)
    high = submit(conn, tenant="ta", recipient="+15551234567", body="x", priority="high")
    normal = submit(conn, tenant="ta", recipient="+15551234567", body="x")
    conn.execute(
        "INSERT INTO fairlane.outbox (tenant, recipient, body, priority) VALUES ('ta', '+15551234567', 'x', 'bulk')"
    )
    rows = conn.execute("SELECT id, priority FROM fairlane.message_details ORDER BY id").fetchall()
    assert [r[1] for r in rows] == ["high", "normal", "bulk"] and [r[0] for r in rows[:2]] == [high, normal]
    with pytest.raises(psycopg.Error) as refused:
        conn.execute(
            "INSERT INTO fairlane.outbox (tenant, recipient, body, priority) "
            "VALUES ('ta', '+15551234567', 'x', 'normal'), ('ta', '+15551234567', 'x', 'urgent')"
        )
    assert refused.value.sqlstate == "FL400"
    assert error_detail(refused.value).items() >= {"field": "priority", "value": "urgent", "row": 2}.items()
    assert "row 2: priority 'urgent' is not one of high, normal, bulk" in str(refused.value)
    # an idempotency key replays only the same level
    submit(conn, tenant="ta", recipient="+15551234567", body="y", idempotency_key="k", priority="bulk")
    with pytest.raises(psycopg.Error) as mismatch:
        submit(conn, tenant="ta", recipient="+15551234567", body="y", idempotency_key="k", priority="high")
    assert error_detail(mismatch.value)["code"] == "idempotency_mismatch"


async def test_priority_over_http(conn, dsn):
    api = await start_api(conn, dsn)
    try:
        response = await api.send("acme", {"to": "+15551234567", "body": "code 1", "priority": "high"})
        assert response.status == 202
        message = await response.json()
        assert message["priority"] == "high"
        response = await api.client.get(f"/v1/messages/{message['id']}", headers=api.tenant("acme"))
        assert (await response.json())["priority"] == "high"
        response = await api.send("acme", {"to": "+15551234567", "body": "code 2"})
        assert (await response.json())["priority"] == "normal"
        response = await api.send("acme", {"to": "+15551234567", "body": "x", "priority": "urgent"})
        assert response.status == 400
        error = (await response.json())["error"]
        assert error["code"] == "invalid_request" and error["details"]["field"] == "priority"
        batch = {"messages": [{"to": "+15551234567", "body": "b", "priority": "bulk"}, {"to": "+1", "body": "c"}]}
        response = await api.client.post("/v1/messages/batch", json=batch, headers={**api.tenant("acme"), **JSON})
        results = (await response.json())["results"]
        assert results[0]["message"]["priority"] == "bulk" and results[1]["status"] == 400
        listed = await api.client.get("/v1/messages?status=queued", headers=api.tenant("acme"))
        assert [m["priority"] for m in (await listed.json())["messages"]] == ["bulk", "normal", "high"]
        response = await api.client.put("/v1/admin/levels", json={"minimum_share": 0.2}, headers=api.admin)
        assert response.status == 200 and (await response.json()) == {"minimum_share": 0.2}
        response = await api.client.put("/v1/admin/levels", json={"minimum_share": 0.9}, headers=api.admin)
        assert response.status == 400 and (await response.json())["error"]["details"]["field"] == "minimum_share"
    finally:
        await api.client.close()
