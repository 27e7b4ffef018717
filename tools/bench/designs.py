"""Storage designs for the message lifecycle (docs/decisions/0014), measured side by side: claim + complete in
batches of 100, FIFO, one connection, with fairlane's columns and indexes, on a 10k and a 1M backlog.

  D1  one messages table and one events table (fairlane until migration 0006)
  D2  a live table + a finished table partitioned by finish time; a message's events move with it (fairlane)
  D3  as D2, but events partitioned by event time and never moved

Run: `fairlane bench designs [--seconds S]` (a scratch database next to the one in use)."""

import asyncio
import time

import asyncpg
import psycopg

from tools.bench.scratch import drop, recreate

DATABASE = "fairlane_bench_designs"
COLUMNS = """id bigint NOT NULL, tenant_id bigint NOT NULL, queue_id bigint NOT NULL, status text NOT NULL,
    recipient text NOT NULL, body text NOT NULL, segments int NOT NULL, expires_at timestamptz NOT NULL,
    attempts int NOT NULL DEFAULT 0, lease_until timestamptz, claim_id bigint, provider_id text,
    created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz"""
LIVE_INDEXES = """CREATE INDEX ON {t} (queue_id, id) WHERE status = 'queued';
CREATE INDEX ON {t} (tenant_id, id);
CREATE INDEX ON {t} (lease_until) WHERE status = 'sending';
CREATE INDEX ON {t} (expires_at) WHERE status IN ('queued', 'scheduled');"""
SPLIT = f"""CREATE TABLE {{d}}.messages ({COLUMNS}) PARTITION BY LIST (finished_at);
CREATE TABLE {{d}}.live PARTITION OF {{d}}.messages (PRIMARY KEY (id)) FOR VALUES IN (NULL) WITH (fillfactor = 90);
{LIVE_INDEXES.format(t="{d}.live")}
CREATE TABLE {{d}}.finished PARTITION OF {{d}}.messages DEFAULT PARTITION BY RANGE (finished_at);
CREATE TABLE {{d}}.finished_1 PARTITION OF {{d}}.finished FOR VALUES FROM ('2000-01-01') TO ('2100-01-01');
CREATE INDEX ON {{d}}.finished_1 (id);
CREATE INDEX ON {{d}}.finished_1 (tenant_id, id);
CREATE INDEX ON {{d}}.finished_1 (provider_id) WHERE provider_id IS NOT NULL;"""
SCHEMAS = {
    "d1": f"""CREATE SCHEMA d1;
CREATE TABLE d1.live ({COLUMNS}, PRIMARY KEY (id)) WITH (fillfactor = 90);
{LIVE_INDEXES.format(t="d1.live")}
CREATE INDEX ON d1.live (provider_id) WHERE provider_id IS NOT NULL;
CREATE TABLE d1.events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, message_id bigint NOT NULL,
    tenant_id bigint NOT NULL, status text NOT NULL, at timestamptz NOT NULL DEFAULT now(), detail jsonb);
CREATE INDEX ON d1.events (message_id, id);""",
    "d2": f"""CREATE SCHEMA d2;
{SPLIT.format(d="d2")}
CREATE SEQUENCE d2.events_seq;
CREATE TABLE d2.events (id bigint NOT NULL DEFAULT nextval('d2.events_seq'), message_id bigint NOT NULL,
    tenant_id bigint NOT NULL, status text NOT NULL, at timestamptz NOT NULL DEFAULT now(), detail jsonb,
    finished_at timestamptz) PARTITION BY LIST (finished_at);
CREATE TABLE d2.events_live PARTITION OF d2.events FOR VALUES IN (NULL);
CREATE INDEX ON d2.events_live (message_id, id);
CREATE TABLE d2.events_finished PARTITION OF d2.events DEFAULT PARTITION BY RANGE (finished_at);
CREATE TABLE d2.events_finished_1 PARTITION OF d2.events_finished FOR VALUES FROM ('2000-01-01') TO ('2100-01-01');
CREATE INDEX ON d2.events_finished_1 (message_id, id);""",
    "d3": f"""CREATE SCHEMA d3;
{SPLIT.format(d="d3")}
CREATE TABLE d3.events (id bigint GENERATED ALWAYS AS IDENTITY, message_id bigint NOT NULL,
    tenant_id bigint NOT NULL, status text NOT NULL, at timestamptz NOT NULL DEFAULT now(), detail jsonb)
    PARTITION BY RANGE (at);
CREATE TABLE d3.events_1 PARTITION OF d3.events FOR VALUES FROM ('2000-01-01') TO ('2100-01-01');
CREATE INDEX ON d3.events_1 (message_id, id);""",
}
LIVE_EVENTS = {"d1": "d1.events", "d2": "d2.events_live", "d3": "d3.events"}
FILL = """INSERT INTO {d}.live (id, tenant_id, queue_id, status, recipient, body, segments, expires_at)
SELECT i, i % 1000, 1, 'queued', '+1555' || i, 'hello ' || i, 1, now() + interval '1 hour'
FROM generate_series($1::bigint, $2::bigint) i;
INSERT INTO {events} (message_id, tenant_id, status)
SELECT i, i % 1000, 'queued' FROM generate_series($1::bigint, $2::bigint) i"""
CLAIM = """WITH picked AS (
    SELECT id FROM {d}.live WHERE queue_id = 1 AND status = 'queued' ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
),
claimed AS (
    UPDATE {d}.live m SET status = 'sending', claim_id = 1, lease_until = now() + interval '60 s', updated_at = now()
    FROM picked p WHERE m.id = p.id RETURNING m.id, m.tenant_id
),
events AS (
    INSERT INTO {events} (message_id, tenant_id, status) SELECT c.id, c.tenant_id, 'sending' FROM claimed c
)
SELECT array_agg(id) FROM claimed"""
FINISH = """WITH gone AS (
    DELETE FROM {d}.live m WHERE m.id = ANY ($1::bigint[]) AND m.status = 'sending' RETURNING m.*
),
kept AS (
    INSERT INTO {d}.finished (id, tenant_id, queue_id, status, recipient, body, segments, expires_at, attempts,
                              provider_id, created_at, updated_at, finished_at)
    SELECT id, tenant_id, queue_id, 'sent', recipient, body, segments, expires_at, attempts + 1, 'p' || id,
           created_at, now(), now()
    FROM gone RETURNING id, tenant_id
)"""
COMPLETE = {
    "d1": """WITH sent AS (
    UPDATE d1.live m SET status = 'sent', provider_id = 'p' || m.id, attempts = m.attempts + 1, claim_id = NULL,
                         lease_until = NULL, updated_at = now(), finished_at = now()
    WHERE m.id = ANY ($1::bigint[]) AND m.status = 'sending' RETURNING m.id, m.tenant_id
)
INSERT INTO d1.events (message_id, tenant_id, status) SELECT id, tenant_id, 'sent' FROM sent""",
    "d2": FINISH.format(d="d2")
    + """,
moved AS (DELETE FROM d2.events_live e WHERE e.message_id = ANY ($1::bigint[]) RETURNING e.*),
moved_in AS (
    INSERT INTO d2.events_finished (id, message_id, tenant_id, status, at, detail, finished_at)
    SELECT id, message_id, tenant_id, status, at, detail, now() FROM moved
)
INSERT INTO d2.events_finished (message_id, tenant_id, status, finished_at)
SELECT id, tenant_id, 'sent', now() FROM kept""",
    "d3": FINISH.format(d="d3")
    + """
INSERT INTO d3.events (message_id, tenant_id, status) SELECT id, tenant_id, 'sent' FROM kept""",
}


async def _fill(dsn: str, design: str, backlog: int) -> None:
    connection = await asyncpg.connect(dsn)
    for first in range(1, backlog + 1, 100_000):
        for statement in FILL.format(d=design, events=LIVE_EVENTS[design]).split(";\n"):
            await connection.execute(statement, first, min(backlog, first + 99_999))
    await connection.execute("VACUUM ANALYZE")
    await connection.close()


async def _drain(dsn: str, design: str, seconds: float) -> float:
    connection = await asyncpg.connect(dsn)
    claim = CLAIM.format(d=design, events=LIVE_EVENTS[design])
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        async with connection.transaction():
            ids = await connection.fetchval(claim, 100)
        if not ids:
            break
        async with connection.transaction():
            await connection.execute(COMPLETE[design], ids)
        done += len(ids)
    rate = done / (time.perf_counter() - started)
    await connection.close()
    return rate


def main(dsn: str, seconds: float = 4.0) -> None:
    scratch = recreate(dsn, DATABASE)
    try:
        print("storage designs: claim + complete, batches of 100, FIFO, one connection, msg/s")
        print(f"  {'backlog':>9}  {'D1 one table':>12}  {'D2 live+finished':>16}  {'D3 events by time':>17}")
        for backlog in (10_000, 1_000_000):
            rates = []
            for design, ddl in SCHEMAS.items():
                with psycopg.connect(scratch, autocommit=True) as connection:
                    connection.execute(f"DROP SCHEMA IF EXISTS {design} CASCADE")
                    connection.execute(ddl)
                asyncio.run(_fill(scratch, design, backlog))
                rates.append(asyncio.run(_drain(scratch, design, seconds)))
            print(f"  {backlog:>9,}  {rates[0]:>12,.0f}  {rates[1]:>16,.0f}  {rates[2]:>17,.0f}")
    finally:
        drop(dsn, DATABASE)
