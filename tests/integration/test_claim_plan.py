"""The claim's cost must not grow with the backlog (PgQueuer's plan regression test): on seeded data with
1,000 tenants, one holding 90% of the messages, a claim of 10 touches about as many buffers at a backlog
of 100k as at 10k, and its queries probe indexes instead of scanning messages."""

import json

import psycopg

from tests.integration.claiming import Clock, setup


def _seed(conn, messages):
    conn.execute(
        """INSERT INTO fairlane.tenants (name, tenant_set_id)
           SELECT 'tenant' || i, (SELECT id FROM fairlane.tenant_sets) FROM generate_series(1, 999) i"""
    )
    conn.execute(
        """INSERT INTO fairlane.senders (tenant_id, address, type)
           SELECT id, '+1555' || lpad(id::text, 7, '0'), 'long_code' FROM fairlane.tenants WHERE name LIKE 'tenant%'"""
    )
    conn.execute(
        """INSERT INTO fairlane.outbox (tenant, recipient, body)
           SELECT CASE WHEN i %% 10 = 0 THEN 'tenant' || (i / 10 %% 999 + 1) ELSE 'big' END,
                  '+1666' || lpad(i::text, 7, '0'), 'hello ' || i
           FROM generate_series(1, %s) i""",
        (messages,),
    )
    conn.execute("ANALYZE")


def _claim_buffers(conn, clock):
    plan = conn.execute(
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT * FROM fairlane.claim_v2(%s, 10, 30, %s)",
        (clock.destination_id, clock.at(clock.now)),
    ).fetchone()[0]
    node = (plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"]
    assert node["Actual Rows"] == 10
    return node["Shared Hit Blocks"] + node["Shared Read Blocks"]


def _buffers_at(conn, messages):
    destination = setup(
        conn,
        rate=1_000_000,
        burst=1_000_000,
        tenant_sets=[("s", 1)],
        tenants=[("big", "s", 1, [("+15550000001", None)])],
    )
    _seed(conn, messages)
    clock = Clock(conn, destination, max_messages=10)
    clock.run(1)  # warm: portions computed, caches hot
    samples = []
    for _ in range(21):
        clock.now += 0.05
        samples.append(_claim_buffers(conn, clock))
    return sorted(samples)[len(samples) // 2]


def test_claim_cost_does_not_grow_with_the_backlog(postgresql, embedded_server):
    postgresql.autocommit = True
    small = _buffers_at(postgresql, 10_000)
    # a second database cloned from the template for the big backlog
    with psycopg.connect(embedded_server.dsn("postgres"), autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS claim_plan_big")
        admin.execute(f"CREATE DATABASE claim_plan_big TEMPLATE {postgresql.info.dbname}_tmpl")
    try:
        with psycopg.connect(embedded_server.dsn("claim_plan_big"), autocommit=True) as big_conn:
            big = _buffers_at(big_conn, 100_000)
    finally:
        with psycopg.connect(embedded_server.dsn("postgres"), autocommit=True) as admin:
            admin.execute("DROP DATABASE IF EXISTS claim_plan_big WITH (FORCE)")
    # a scan of the messages table would cost about a thousand pages more at 100k than at 10k
    assert big <= small * 1.3 + 100, (small, big)
