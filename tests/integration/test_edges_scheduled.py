"""Admission for scheduled messages (issue 13, docs/decisions/0017): a tenant holds at most
`limits.scheduled_per_tenant` scheduled messages, and a due message that would overflow its queue fails
with queue_overflow at promotion (its event, callback and usage), so scheduling cannot bypass admission."""

import datetime as dt
import json

import psycopg
import pytest

from tests.integration.api import start_api
from tests.integration.fixtures import apply_config, error_detail, insert_outbox, submit

RATE, MAX_DRAIN = 10, 60  # the queue may hold 600 segments: a minute at its portion
CONFIG = {
    "limits": {"scheduled_per_tenant": 3000},
    "tenant_sets": [{"name": "s"}],
    "gateways": [{"name": "g", "kind": "http", "url": "http://127.0.0.1:9/messages"}],
    "destinations": [{"code": "D", "gateway": "g", "rate": RATE, "max_drain_seconds": MAX_DRAIN}],
    "tenants": [
        {
            "name": "flood",
            "tenant_set": "s",
            "status_callback": "https://hooks.example.com/flood",
            "senders": [{"address": "+15550100001", "type": "long_code"}],
        },
        {"name": "other", "tenant_set": "s", "senders": [{"address": "+15550100002", "type": "long_code"}]},
    ],
    "routes": [{"prefix": "+1", "sender_type": "long_code", "destination": "D"}],
}


def _flood(conn, count: int, due_in: str) -> list[dict]:
    """`count` scheduled messages of tenant flood through the API's SQL path (each judged on its own)."""
    items = [{"tenant": "flood", "recipient": f"+1555{i:07d}", "body": "sale!", "due_in": due_in} for i in range(count)]
    rows = conn.execute(
        "SELECT ordinal, error FROM fairlane.submit_json_v1(("
        "  SELECT jsonb_agg(i - 'due_in' || jsonb_build_object('send_at', now() + (i->>'due_in')::interval))"
        "  FROM jsonb_array_elements(%s::jsonb) i))",
        (json.dumps(items),),
    ).fetchall()
    return [row[1] for row in rows]


def test_a_scheduled_flood_is_capped_and_admitted_at_promotion(conn):
    apply_config(conn, CONFIG)
    # ten times what the queue may hold, all due in 2 s
    errors = _flood(conn, 10 * RATE * MAX_DRAIN, "2 seconds")
    refused = [error for error in errors if error is not None]
    assert len(errors) - len(refused) == 3000  # the cap
    assert {error["code"] for error in refused} == {"scheduled_overflow"}
    assert refused[0]["field"] == "send_at" and refused[0]["details"]["scheduled_per_tenant"] == 3000
    # the strict paths alike: the outbox and fairlane.submit
    in_an_hour = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    with pytest.raises(psycopg.Error) as raised:
        insert_outbox(conn, [{"tenant": "flood", "recipient": "+15551234567", "body": "x", "send_at": in_an_hour}])
    assert raised.value.sqlstate == "FL429" and error_detail(raised.value)["code"] == "scheduled_overflow"
    with pytest.raises(psycopg.Error) as raised:
        submit(conn, tenant="flood", recipient="+15551234567", body="x", send_at=in_an_hour)
    assert raised.value.sqlstate == "FL429" and error_detail(raised.value)["code"] == "scheduled_overflow"
    # another tenant is not affected, nor are the flood's unscheduled messages
    conn.execute("SELECT fairlane.submit(tenant => 'other', recipient => '+15551234567', body => 'x', "
                 "send_at => now() + interval '1 hour')")  # fmt: skip

    promoted = conn.execute("SELECT fairlane.promote_v1(now() + interval '3 seconds')").fetchone()[0]
    assert promoted == 3000
    statuses = dict(
        conn.execute(
            "SELECT m.status, count(*) FROM fairlane.messages m JOIN fairlane.tenants t ON t.id = m.tenant_id "
            "WHERE t.name = 'flood' GROUP BY m.status"
        ).fetchall()
    )
    assert statuses == {"queued": RATE * MAX_DRAIN, "failed": 3000 - RATE * MAX_DRAIN}, statuses
    (drain, admission) = conn.execute(
        "SELECT projected_drain_seconds, admission FROM fairlane.queue_state WHERE tenant = 'flood'"
    ).fetchone()
    assert drain <= MAX_DRAIN and admission == "closed"
    failed = conn.execute(
        "SELECT error_code, error_message FROM fairlane.messages WHERE status = 'failed' LIMIT 1"
    ).fetchone()
    assert failed[0] == "queue_overflow" and "was full when the message was due" in failed[1]
    # each failure has its event and its callback, and counts in usage
    (events,) = conn.execute(
        "SELECT count(*) FROM fairlane.message_events "
        "WHERE status = 'failed' AND detail->>'error_code' = 'queue_overflow'"
    ).fetchone()
    assert events == 3000 - RATE * MAX_DRAIN
    (announced,) = conn.execute(
        "SELECT count(*) FROM fairlane.callbacks WHERE payload::jsonb->'data'->>'error_code' = 'queue_overflow'"
    ).fetchone()
    assert announced == events
    (usage,) = conn.execute("SELECT sum(messages) FROM fairlane.usage_daily WHERE status = 'failed'").fetchone()
    assert usage == events
    # the cap counts scheduled messages only: room again once they are promoted
    assert _flood(conn, 1, "1 hour") == [None]


def _counts(conn) -> dict[str, tuple[int, int]]:
    """Per tenant: its count of scheduled messages (tenants.scheduled_count) and the scheduled messages there are."""
    rows = conn.execute(
        "SELECT t.name, t.scheduled_count, (SELECT count(*) FROM fairlane.messages_live m "
        "  WHERE m.tenant_id = t.id AND m.status = 'scheduled') FROM fairlane.tenants t"
    ).fetchall()
    return {name: (kept, actual) for name, kept, actual in rows}


def test_every_way_out_of_scheduled_keeps_the_count(conn):
    apply_config(conn, CONFIG)
    assert _flood(conn, 5, "2 seconds") + _flood(conn, 4, "1 hour") == [None] * 9
    submit(conn, tenant="other", recipient="+15551234567", body="x", send_at=_in_an_hour())
    assert _counts(conn) == {"flood": (9, 9), "other": (1, 1)}
    (later,) = conn.execute(
        "SELECT id FROM fairlane.messages_live WHERE status = 'scheduled' AND send_at > now() + interval '1 minute' "
        "AND tenant_id = (SELECT id FROM fairlane.tenants WHERE name = 'flood') LIMIT 1"
    ).fetchone()
    conn.execute("SELECT fairlane.cancel_v1(tenant_id, id) FROM fairlane.messages WHERE id = %s", (later,))
    assert _counts(conn) == {"flood": (8, 8), "other": (1, 1)}
    assert conn.execute("SELECT fairlane.promote_v1(now() + interval '3 seconds')").fetchone()[0] == 5
    assert _counts(conn) == {"flood": (3, 3), "other": (1, 1)}
    conn.execute("SELECT fairlane.expire_v1(now() + interval '3 days')")  # past every validity
    assert _counts(conn) == {"flood": (0, 0), "other": (0, 0)}


async def test_the_cap_over_http_is_429_with_retry_after(conn, dsn):
    api = await start_api(conn, dsn)
    try:
        response = await api.client.put("/v1/admin/limits", json={"scheduled_per_tenant": 2}, headers=api.admin)
        assert response.status == 200 and await response.json() == {"scheduled_per_tenant": 2}
        later = {"to": "+15551234567", "body": "later"}
        for status in (202, 202, 429):
            response = await api.send("acme", {**later, "send_at": _in_an_hour()})
            assert response.status == status, await response.text()
        error = (await response.json())["error"]
        assert error["code"] == "scheduled_overflow" and error["retryable"] and error["details"]["field"] == "send_at"
        assert response.headers["Retry-After"] == "60"
        assert (await api.send("acme", later)).status == 202  # sending now is not scheduling
        assert (await api.send("globex", {**later, "send_at": _in_an_hour()})).status == 202  # nor another tenant
    finally:
        await api.client.close()


def _in_an_hour() -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
