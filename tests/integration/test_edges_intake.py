"""Cheap refusals, fair intake and bounded queries (issue 13, docs/decisions/0017): 10,000 requests with
made-up API keys cost the database no query per request while a tenant's valid request succeeds; the group
commit serves a tenant's single POST before a bulk tenant's waiting batches and answers a tenant over its
waiting limit with 429; a tenant's list by status or destination reads a page, not its history."""

import asyncio
import json
import secrets
from collections import Counter

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from db import pool as db_pool
from db import queries
from db.errors import FairlaneError
from service.api.app import create_app
from service.api.auth import KEYS, KeyCache
from service.api.state import ApiSettings
from service.api.submitter import Submitter
from tests.integration.api import ADMIN_TOKEN
from tests.integration.fixtures import apply_basic, submit


def _transactions(conn) -> int:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    return conn.execute(
        "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
    ).fetchone()[0]


def _others(conn) -> int:
    return conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    ).fetchone()[0]


@pytest.mark.timeout(180)
async def test_ten_thousand_unknown_keys_cost_no_query_per_request(conn, dsn):
    keys = apply_basic(conn).api_keys
    before = _transactions(conn)
    app = create_app(ApiSettings(dsn, ADMIN_TOKEN, 0))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("/v1/messages"))
    body = {"to": "+15551234567", "body": "hi"}
    answers: Counter[int] = Counter()
    try:
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50)) as attacker,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))) as tenant,
        ):
            made_up = iter(range(10_000))

            async def spray() -> None:
                for _ in made_up:
                    headers = {"Authorization": f"Bearer fl_{secrets.token_urlsafe(24)}"}
                    async with attacker.post(url, json=body, headers=headers) as response:
                        await response.read()
                        answers[response.status] += 1

            async def valid_request_meanwhile() -> int:
                while sum(answers.values()) < 3_000:
                    await asyncio.sleep(0.01)
                headers = {"Authorization": f"Bearer {keys['acme']}"}  # its first request: not cached yet
                async with tenant.post(url, json=body, headers=headers) as response:
                    return response.status

            *_, status = await asyncio.gather(*(spray() for _ in range(50)), valid_request_meanwhile())
        assert status == 202
        assert sum(answers.values()) == 10_000 and set(answers) <= {401, 429}, answers
        lookups = app[KEYS].queries
        assert lookups < 100, lookups
    finally:
        await server.close()  # the API's connections end: their counters reach pg_stat_database
    for _ in range(200):
        if _others(conn) == 0:
            break
        await asyncio.sleep(0.05)
    spent = _transactions(conn) - before
    assert spent < 200, f"{spent} transactions for 10,000 requests with unknown keys"


async def test_strangers_from_many_addresses_cannot_lock_a_tenant_out(conn, dsn):
    keys = apply_basic(conn).api_keys
    app = create_app(ApiSettings(dsn, ADMIN_TOKEN, 0))
    app[KEYS] = KeyCache(in_all=0.01)  # the budget of failed lookups in all: one, spent by the first stranger
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("/v1/messages"))
    body = {"to": "+15551234567", "body": "hi"}

    async def post(address: str, key: str) -> int:
        connector = aiohttp.TCPConnector(local_addr=(address, 0))
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.post(url, json=body, headers={"Authorization": f"Bearer {key}"}) as response:
                await response.read()
                return response.status

    try:
        strangers = [f"127.0.1.{i}" for i in range(1, 26)]
        for _ in range(2):
            for address in strangers:
                await post(address, f"fl_{secrets.token_urlsafe(24)}")
        assert await post(strangers[0], f"fl_{secrets.token_urlsafe(24)}") == 429  # has failed: limited
        # a tenant's first request (its key not cached here), from an address that has not failed: taken
        assert await post("127.0.2.1", keys["acme"]) == 202
        assert await post("127.0.2.2", keys["globex"]) == 202
        # revoking one of acme's keys forgets acme's keys here, and only those
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with aiohttp.ClientSession() as session:
            async with session.post(server.make_url("/v1/admin/tenants/acme/keys"), headers=admin) as response:
                key_id = (await response.json())["id"]
            revoke = server.make_url(f"/v1/admin/tenants/acme/keys/{key_id}/revoke")
            async with session.post(revoke, headers=admin) as response:
                assert response.status == 200
        lookups = app[KEYS].queries
        assert await post("127.0.2.2", keys["globex"]) == 202 and app[KEYS].queries == lookups
        assert await post("127.0.2.1", keys["acme"]) == 202 and app[KEYS].queries == lookups + 1
    finally:
        await server.close()


async def test_a_bulk_tenant_never_holds_back_another_tenants_post(conn, dsn):
    apply_basic(conn)
    pool = await db_pool.create(dsn, min_size=2, max_size=4)
    submitter = Submitter(pool, max_pending_per_tenant=4000)
    finished: list[str] = []

    def batch(n: int) -> list[dict]:
        return [
            {"tenant": "acme", "recipient": f"+1555{n:03d}{i:04d}", "body": f"bulk {i}", "sender": "55501"}
            for i in range(1000)
        ]

    async def send(label: str, tenant: str, submissions: list[dict]) -> None:
        try:
            results = await submitter.submit(tenant, submissions)
            assert all(result.error is None for result in results)
            finished.append(label)
        except FairlaneError as error:
            finished.append(f"{label}: {error.code}")

    try:
        bulk = [asyncio.create_task(send(f"A{n}", "acme", batch(n))) for n in range(1, 9)]
        # every batch handed over once the submitter has answered the last two: two in calls, four waiting
        await asyncio.wait(bulk[6:])
        assert finished == ["A7: rate_limited", "A8: rate_limited"] and submitter.waiting("acme") == 4000
        single = [{"tenant": "globex", "recipient": "+15557770000", "body": "otp 123456"}]
        await asyncio.gather(send("B", "globex", single), *bulk)
    finally:
        await submitter.close()
        await pool.close()
    assert set(finished) == {"A1", "A2", "A3", "A4", "A5", "A6", "A7: rate_limited", "A8: rate_limited", "B"}
    written = [label for label in finished if ":" not in label]
    assert written.index("B") <= 2, finished  # after at most the two calls in flight when it came
    assert written.index("B") < written.index("A3")


async def _explain(dsn: str, query: str, *args) -> list[dict]:
    """The scans of a query's executed plan: relation, rows returned (all loops) and rows filtered out."""
    connection = await asyncpg.connect(dsn)
    try:
        [plan] = json.loads(await connection.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + query, *args))
    finally:
        await connection.close()
    scans = []

    def walk(node: dict) -> None:
        if "Relation Name" in node:
            scans.append(
                {
                    "relation": node["Relation Name"],
                    "rows": node["Actual Rows"] * node["Actual Loops"] + node.get("Rows Removed by Filter", 0),
                }
            )
        for child in node.get("Plans", ()):
            walk(child)

    walk(plan["Plan"])
    return scans


async def test_a_filtered_list_reads_a_page_not_the_history(conn, dsn):
    apply_basic(conn)
    first = submit(conn, tenant="acme", recipient="+15551234567", body="seed")
    for _ in range(3):
        submit(conn, tenant="acme", recipient="+15551234567", body="waiting")
    (tenant_id, queue_id) = conn.execute(
        "SELECT tenant_id, queue_id FROM fairlane.messages WHERE id = %s", (first,)
    ).fetchone()
    # a long history: 20,000 sent messages, then a few canceled ones, all finished a minute ago
    conn.execute(
        "INSERT INTO fairlane.messages_finished (id, tenant_id, queue_id, status, recipient, body, segments, encoding,"
        " expires_at, created_at, updated_at, finished_at, event_count)"
        " SELECT nextval('fairlane.messages_id_seq'), %s, %s, CASE WHEN i > 19995 THEN 'canceled' ELSE 'sent' END,"
        " '+15551234567', 'old', 1, 'GSM-7', now(), now(), now(), now() - interval '1 minute', 1"
        " FROM generate_series(1, 20000) i ORDER BY i",
        (tenant_id, queue_id),
    )
    # and another tenant's 2,000 messages in flight
    conn.execute(
        "SELECT fairlane.submit(tenant => 'globex', recipient => '+15551234567', body => 'x') "
        "FROM generate_series(1, 2000)"
    )
    conn.execute(
        "UPDATE fairlane.messages_live SET status = 'sending', lease_until = now() + interval '1 hour', claim_id = 1 "
        "WHERE tenant_id = (SELECT id FROM fairlane.tenants WHERE name = 'globex')"
    )
    conn.execute("ANALYZE fairlane.messages_finished_default")
    conn.execute("ANALYZE fairlane.messages_live")
    query = queries.load("messages")["messages"]
    before = 2**63 - 1
    for status, destination in (
        ("canceled", None), ("queued", None), (None, "US-SC"), ("sent", "US-SC"), ("sending", None), (None, None)
    ):  # fmt: skip
        scans = await _explain(dsn, query, tenant_id, status, destination, 51, before)
        read = sum(scan["rows"] for scan in scans if scan["relation"].startswith("messages"))
        assert read <= 500, (status, destination, scans)
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(query, tenant_id, "canceled", None, 51, before)
        assert [json.loads(row["message"])["status"] for row in rows] == ["canceled"] * 5
        rows = await connection.fetch(query, tenant_id, "queued", "US-SC", 51, before)
        assert [json.loads(row["message"])["body"] for row in rows] == ["waiting"] * 3 + ["seed"]
        rows = await connection.fetch(query, tenant_id, None, None, 51, before)
        assert len(rows) == 51 and [json.loads(row["message"])["status"] for row in rows[:4]] == ["canceled"] * 4
    finally:
        await connection.close()


# rows of queues, destinations and live messages read (in scans and index fetches) in this transaction (small
# lookup tables such as senders and tenants the planner may read whole at these sizes, whatever the query)
READ = """
SELECT coalesce(sum(coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)), 0)
FROM pg_stat_xact_user_tables
WHERE schemaname = 'fairlane' AND relname IN ('queues', 'destinations', 'messages_live')
"""


async def _rows_read(dsn: str, query: str, *args) -> tuple[int, list]:
    """The rows of queues, destinations and live messages a query reads, and its rows."""
    connection = await asyncpg.connect(dsn)
    try:
        async with connection.transaction():
            before = await connection.fetchval(READ)
            rows = await connection.fetch(query, *args)
            return await connection.fetchval(READ) - before, rows
    finally:
        await connection.close()


async def test_a_tenants_queues_read_its_own_destinations_only(conn, dsn):
    apply_basic(conn)
    submit(conn, tenant="acme", recipient="+15551234567", body="hi")
    (tenant_id,) = conn.execute("SELECT id FROM fairlane.tenants WHERE name = 'acme'").fetchone()
    query = queries.load("messages")["queues"]
    alone, rows = await _rows_read(dsn, query, tenant_id)
    assert [(row["destination"], row["depth"], row["admission"]) for row in rows] == [("US-SC", 1, "open")]
    # 300 other tenants, each with a waiting message on a destination of its own
    conn.execute(
        "INSERT INTO fairlane.destinations (code, gateway_id, rate) "
        "SELECT 'X' || i, (SELECT id FROM fairlane.gateways LIMIT 1), 10 FROM generate_series(1, 300) i"
    )
    conn.execute(
        "INSERT INTO fairlane.tenants (name, tenant_set_id) "
        "SELECT 'other' || i, (SELECT id FROM fairlane.tenant_sets LIMIT 1) FROM generate_series(1, 300) i"
    )
    conn.execute(
        "INSERT INTO fairlane.senders (tenant_id, address, type) "
        "SELECT id, '+1555' || lpad(id::text, 7, '0'), 'long_code' FROM fairlane.tenants WHERE name LIKE 'other%'"
    )
    conn.execute(
        "SELECT fairlane.submit(tenant => t.name, recipient => '+15551234567', body => 'x', "
        "destination => 'X' || substr(t.name, 6)) FROM fairlane.tenants t WHERE t.name LIKE 'other%'"
    )
    conn.execute("ANALYZE")
    among_others, again = await _rows_read(dsn, query, tenant_id)
    assert [dict(row) | {"oldest_age_seconds": None} for row in again] == [
        dict(row) | {"oldest_age_seconds": None} for row in rows
    ]
    assert among_others <= alone + 10, (alone, among_others)  # not the 300 other queues and destinations
    # what the view (every destination's portions) reads, for comparison
    everything, _ = await _rows_read(dsn, "SELECT * FROM fairlane.queue_state WHERE queue_id = $1", rows[0]["queue_id"])
    assert everything > 600, everything
