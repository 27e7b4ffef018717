"""Outbox throughput: rows/s through fairlane.outbox (every rule applied) against a bare table.

Also measured, to show where the time goes: the same rows stored in a table shaped like fairlane.messages
(its columns and indexes, no rules, no events, no foreign key), the floor of any design that keeps a
message row with its claim and tenant indexes.

Run: `fairlane bench outbox [--rows N]` (embedded PostgreSQL unless DATABASE_URL is set). It creates a
scratch database next to the one in use, migrates it, and for each method (INSERT ... SELECT and COPY)
alternates bare-table and outbox runs, printing each run and the median ratio outbox / bare.
"""

import statistics
import time

import psycopg

from db import configuration, queries
from service.model.configuration import parse_configuration
from tools.bench.scratch import drop, recreate

DATABASE = "fairlane_bench"
TENANTS = 10
RUNS = 3


def _recreate(dsn: str) -> str:
    scratch = recreate(dsn, DATABASE)
    config = {
        "tenant_sets": [{"name": "bench"}],
        "gateways": [{"name": "null", "kind": "http", "url": "http://127.0.0.1:9/"}],
        "destinations": [{"code": "BENCH", "gateway": "null", "rate": 100000, "max_drain_seconds": 36000}],
        "tenants": [
            {"name": f"bench{i}", "tenant_set": "bench", "senders": [{"address": "55500", "type": "short_code"}]}
            for i in range(TENANTS)
        ],
        "routes": [{"prefix": "+1", "sender_type": "short_code", "destination": "BENCH"}],
    }
    with psycopg.connect(scratch) as connection:
        configuration.apply(connection, parse_configuration(config).model_dump())
    return scratch


def _copy_data(rows: int) -> bytes:
    return "".join(f"bench{i % TENANTS}\t+1555{i:07d}\tYour code is {i}\n" for i in range(1, rows + 1)).encode()


def _timed(connection: psycopg.Connection, run) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    with connection.transaction():
        run()
    return time.perf_counter() - started


def main(dsn: str, rows: int = 100_000) -> None:
    q = queries.load("bench")
    scratch = _recreate(dsn)
    data = _copy_data(rows)
    params = {"rows": rows, "tenants": TENANTS}
    results: dict[str, list[float]] = {}
    with psycopg.connect(scratch, autocommit=True) as connection:
        connection.execute(q["create_bare_table"])
        connection.execute(q["create_message_shaped_table"])

        def copy(statement: str) -> None:
            with connection.cursor() as cursor, cursor.copy(statement) as writer:
                for start in range(0, len(data), 1 << 20):
                    writer.write(data[start : start + (1 << 20)])

        methods = {
            "bare INSERT ... SELECT": lambda: connection.execute(q["insert_select_bare"], params),
            "message-shaped INSERT": lambda: connection.execute(q["insert_select_message_shaped"], params),
            "outbox INSERT ... SELECT": lambda: connection.execute(q["insert_select_outbox"], params),
            "bare COPY": lambda: copy(q["copy_bare"]),
            "outbox COPY": lambda: copy(q["copy_outbox"]),
        }
        print(f"outbox benchmark: {rows:,} rows per run, {TENANTS} tenants, {RUNS} runs, median shown")
        for run in range(RUNS):
            for name, method in methods.items():
                if name.startswith("bare"):
                    connection.execute(q["truncate_bare_table"])
                if name.startswith("message-shaped"):
                    connection.execute(q["truncate_message_shaped_table"])
                connection.execute("CHECKPOINT")
                seconds = _timed(connection, method)
                results.setdefault(name, []).append(rows / seconds)
                print(f"  run {run + 1}  {name:<26} {rows / seconds:>10,.0f} rows/s")
        accepted = connection.execute(q["message_count"]).fetchone()
        assert accepted is not None and accepted[0] == 2 * RUNS * rows, accepted
    print()
    for method in ("INSERT ... SELECT", "COPY"):
        bare = statistics.median(results[f"bare {method}"])
        outbox = statistics.median(results[f"outbox {method}"])
        print(f"{method:<18} bare {bare:>10,.0f} rows/s   outbox {outbox:>10,.0f} rows/s   ratio {outbox / bare:.2f}")
    floor = statistics.median(results["message-shaped INSERT"])
    bare = statistics.median(results["bare INSERT ... SELECT"])
    print(
        f"floor: storing resolved rows in a messages-shaped table (same indexes, no rules, no events) runs at "
        f"{floor:,.0f} rows/s, {floor / bare:.2f} of the bare table"
    )
    drop(dsn, DATABASE)
