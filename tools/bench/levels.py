"""Levels of service, two designs measured side by side (docs/decisions/0020), with the claim driven by an
injected clock (a claim every 50 ms of simulated time, 100 segments/s, burst 10) in a scratch database:

  queue per level    the tenant's high and bulk messages in two queues of their own under it, weighted
                     0.9 : 0.1 (as two tenants of one tenant set: the share between them follows who is active)
  order in a queue   one queue; the claim takes high first, bulk keeping its minimum share (fairlane, claim_v4)

beside another tenant's flood in a tenant set of equal weight. Phase 1: the tenant's bulk campaign is backlogged
and passcodes (high) arrive five times a second; phase 2: its high level is backlogged too. Printed: the
passcodes' wait (submission to claim, simulated), the other tenant's share (ideal 50%), bulk's share of the
tenant (ideal 10% in phase 2) and the claim's time per call (wall clock).

Run: `fairlane bench levels [--seconds S]` (S: simulated seconds per phase, default 10)."""

import statistics
import time
from typing import Any

import psycopg

from db import configuration
from service.model.configuration import parse_configuration
from tools.bench.scratch import drop, recreate

DATABASE = "fairlane_bench_levels"
STEP = 0.05
RATE = 100


def _configure(connection: psycopg.Connection[Any], design: str) -> int:
    def tenant(name: str, tenant_set: str, weight: int, sender: str) -> dict[str, Any]:
        return {"name": name, "tenant_set": tenant_set, "weight": weight,
                "senders": [{"address": sender, "type": "long_code"}]}  # fmt: skip

    if design == "queue per level":
        tenants = [tenant("a-high", "a", 9, "+15550000001"), tenant("a-bulk", "a", 1, "+15550000002")]
    else:
        tenants = [tenant("a", "a", 1, "+15550000001")]
    document = {
        "tenant_sets": [{"name": "a"}, {"name": "b"}],
        "gateways": [{"name": "g", "kind": "http", "url": "http://127.0.0.1:9/"}],
        "destinations": [{"code": "X", "gateway": "g", "rate": RATE, "burst": 10, "max_drain_seconds": 36000}],
        "tenants": [*tenants, tenant("b", "b", 1, "+15550000003")],
        "routes": [{"prefix": "+1", "sender_type": "long_code", "destination": "X"}],
    }
    configuration.apply(connection, parse_configuration(document).model_dump())
    row = connection.execute("SELECT id FROM fairlane.destinations WHERE code = 'X'").fetchone()
    assert row is not None
    return int(row[0])


def _backlog(connection: psycopg.Connection[Any], tenant: str, sender: str, count: int, priority: str) -> None:
    connection.execute(
        """INSERT INTO fairlane.outbox (tenant, sender, recipient, body, priority)
           SELECT %s, %s, '+1555' || lpad(i::text, 7, '0'), 'x', %s FROM generate_series(1, %s) i""",
        (tenant, sender, priority, count),
    )


def _where(design: str, level: str) -> tuple[str, str]:
    """The tenant and sender a level's messages go to."""
    if design == "queue per level":
        return ("a-high", "+15550000001") if level == "high" else ("a-bulk", "+15550000002")
    return "a", "+15550000001"


def _phase(connection, design, destination, start, seconds, passcodes):  # type: ignore[no-untyped-def]
    base = connection.execute("SELECT clock_timestamp() + interval '1 second'").fetchone()[0]
    claimed, submitted, took = [], {}, []
    tenant, sender = _where(design, "high")
    for i in range(round(seconds / STEP)):
        now = round(start + i * STEP, 6)
        if passcodes and i % 4 == 0:
            row = connection.execute(
                "SELECT fairlane.submit(tenant => %s, sender => %s, recipient => '+15557654321', body => 'code', "
                "priority => 'high')",
                (tenant, sender),
            ).fetchone()
            submitted[row[0]] = now
        at = connection.execute("SELECT %s::timestamptz + make_interval(secs => %s)", (base, now)).fetchone()[0]
        began = time.perf_counter()
        rows = connection.execute(
            """SELECT c.message_id, c.claim_id, c.tenant, m.priority, c.segments
               FROM fairlane.claim_v2(%s, 100, 30, %s) c JOIN fairlane.messages m ON m.id = c.message_id""",
            (destination, at),
        ).fetchall()
        took.append(time.perf_counter() - began)
        if rows:
            n = len(rows)
            connection.execute(
                "SELECT fairlane.complete_v1(%s, %s, %s, %s, %s, %s, %s, 5, %s)",
                (rows[0][1], [r[0] for r in rows], ["sent"] * n, [None] * n, [None] * n, [None] * n, [None] * n, at),
            )
        claimed += [(now, r[0], r[2], r[3], r[4]) for r in rows]
    return claimed, submitted, took


def _measure(dsn: str, design: str, seconds: float) -> dict[str, float]:
    scratch = recreate(dsn, DATABASE)
    try:
        with psycopg.connect(scratch, autocommit=True) as connection:
            destination = _configure(connection, design)
            _backlog(connection, *_where(design, "bulk"), 3000, "bulk")
            _backlog(connection, "b", "+15550000003", 6000, "normal")
            claimed, submitted, took = _phase(connection, design, destination, 0, seconds, passcodes=True)
            waits = sorted(at - submitted[m] for at, m, *_ in claimed if m in submitted)
            other = sum(s for at, _, t, _, s in claimed if at >= 1 and t == "b")
            total = sum(s for at, *_, s in claimed if at >= 1)
            _backlog(connection, *_where(design, "high"), 3000, "high")
            claimed, _, more = _phase(connection, design, destination, seconds, seconds, passcodes=False)
            later = [c for c in claimed if c[0] >= seconds + 1]
            tenant_a = [c for c in later if c[2] != "b"]
            bulk = sum(s for _, _, t, p, s in tenant_a if p == 2 or t == "a-bulk")
            return {
                "high p50 ms": 1000 * waits[len(waits) // 2],
                "high p99 ms": 1000 * waits[int(0.99 * len(waits))],
                "other's share 1": 100 * other / total,
                "bulk's share 2": 100 * bulk / sum(s for *_, s in tenant_a),
                "other's share 2": 100 * sum(s for _, _, t, _, s in later if t == "b") / sum(s for *_, s in later),
                "claim ms": 1000 * statistics.median(took + more),
            }
    finally:
        drop(dsn, DATABASE)


def main(dsn: str, seconds: float = 10.0) -> None:
    print(f"levels of service: {RATE} segments/s, a claim every {STEP * 1000:.0f} ms, {seconds:.0f} s per phase")
    results = {design: _measure(dsn, design, seconds) for design in ("queue per level", "order in a queue")}
    columns = list(next(iter(results.values())))
    print("| design | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for design, figures in results.items():
        print(f"| {design} | " + " | ".join(f"{figures[c]:.1f}" for c in columns) + " |")
    print("phase 1: the tenant's bulk backlogged, passcodes at 5/s; phase 2: its high level backlogged too;")
    print("ideal: other's share 50%, bulk's share of the tenant 10% in phase 2, passcodes within one claim (50 ms)")
