"""Dispatch throughput: messages/s through claim + complete (a null in-process gateway, no quota) for 1, 2
and 4 processes and batches of 10 and 100, at backlogs of 10k and 1M over 1,000 tenants with one holding
90%; in the same run the raw FIFO SKIP LOCKED claim + delete loop on a bare table of the same size and batch,
and the ratio. Also the lifecycle floor: the same FIFO loop on tables shaped like fairlane.messages and
message_events, making the writes every message's lifecycle requires (status sending with a lease, then
sent, one event each) but no fair share, no queue counters and no token bucket: what fairlane pays for
fairness and pacing is the gap between it and the floor.

And a peer: PgQueuer (the `pgqueuer` package, a Python job queue on PostgreSQL) draining a backlog of the
same size in its own tables (installed with its own installer, `Queries.install`; filled with its own
`enqueue`, one entrypoint, FIFO) with the same processes, each running PgQueuer's own consumer
(`QueueManager.run`) with a no-op entrypoint and the batch as its dequeue batch size, for the same seconds
and the same share of the backlog. Per job PgQueuer marks it picked in its dequeue (`UPDATE ... SKIP
LOCKED`, with its worker id and heartbeat), then, buffered up to a batch, deletes it from its queue table and
writes a `successful` row to its log table (besides the `queued` row `enqueue` wrote); its table trigger
NOTIFYs on each statement, and it runs its listener health check and heartbeats. A PgQueuer process counts
the jobs its entrypoint ran until the time or its share is up; its seconds start before its consumer's own
start (a structure check and LISTEN: a few ms) and end once the consumer has stopped and written the last
completions. Every process of every column commits with synchronous_commit off (as the dispatcher's claims do;
its completions are synchronous since docs/decisions/0019, about 0.8x of this on one process) and runs one
untimed batch first.

Run: `fairlane bench dispatch [--seconds S] [--large N] [--processes 1,2,4] [--batches 10,100]`.
"""

import asyncio
import multiprocessing
import time

import asyncpg
import psycopg
from pgqueuer import Job, Queries, QueueManager

from db import configuration, queries
from service.model.configuration import parse_configuration
from tools.bench.scratch import drop, recreate

DATABASE = "fairlane_bench_dispatch"
TENANTS = 1000
PGQUEUER_ENTRYPOINT = "bench"
PGQUEUER_CHUNK = 10_000  # jobs per enqueue call


def _configure(scratch: str) -> None:
    config = {
        "tenant_sets": [{"name": "bench"}],
        "gateways": [{"name": "null", "kind": "http", "url": "http://127.0.0.1:9/"}],
        "destinations": [
            {"code": "BENCH", "gateway": "null", "rate": 1e9, "burst": 2_000_000_000, "max_drain_seconds": 100000}
        ],
        "tenants": [
            {"name": "big", "tenant_set": "bench", "senders": [{"address": "+15550000000", "type": "long_code"}]}
        ],
        "routes": [{"prefix": "+1", "sender_type": "long_code", "destination": "BENCH"}],
    }
    with psycopg.connect(scratch) as connection:
        configuration.apply(connection, parse_configuration(config).model_dump())
        connection.execute(
            """INSERT INTO fairlane.tenants (name, tenant_set_id)
               SELECT 'tenant' || i, (SELECT id FROM fairlane.tenant_sets) FROM generate_series(1, %s) i""",
            (TENANTS - 1,),
        )
        connection.execute(
            """INSERT INTO fairlane.senders (tenant_id, address, type)
               SELECT id, '+1555' || lpad(id::text, 7, '0'), 'long_code' FROM fairlane.tenants WHERE name <> 'big'"""
        )


def _top_up(scratch: str, backlog: int) -> None:
    q = queries.load("bench")
    with psycopg.connect(scratch, autocommit=True) as connection:
        connection.execute(q["create_raw_queue"])
        connection.execute(q["create_lifecycle_tables"])
        queued = connection.execute(q["queued"]).fetchone()[0]
        raw = connection.execute(q["raw_depth"]).fetchone()[0]
        lifecycle = connection.execute(q["lifecycle_depth"]).fetchone()[0]
        if backlog > queued:
            connection.execute(q["fill"], {"rows": backlog - queued})
        if backlog > raw:
            connection.execute(q["raw_fill"], {"rows": backlog - raw})
        if backlog > lifecycle:
            connection.execute(q["lifecycle_fill"], {"rows": backlog - lifecycle})
        asyncio.run(_pgqueuer_top_up(scratch, backlog))
        connection.execute("VACUUM ANALYZE")


async def _pgqueuer_top_up(scratch: str, backlog: int) -> None:
    """PgQueuer's schema (installed once, by its installer) and `backlog` queued jobs, through its enqueue."""
    connection = await asyncpg.connect(scratch)
    try:
        pgqueuer = Queries.from_asyncpg_connection(connection)
        if not await pgqueuer.schema_is_installed():
            await pgqueuer.install()
        queued = sum(row.count for row in await pgqueuer.queue_size() if row.status == "queued")
        for first in range(queued, backlog, PGQUEUER_CHUNK):
            jobs = range(first, min(first + PGQUEUER_CHUNK, backlog))
            await pgqueuer.enqueue(
                [PGQUEUER_ENTRYPOINT] * len(jobs), [f"hello {i}".encode() for i in jobs], [0] * len(jobs)
            )
    finally:
        await connection.close()


async def _started(start) -> float:  # type: ignore[no-untyped-def]
    """Count this worker in, then wait for the start time every worker shares; return it."""
    with start.get_lock():
        start.value += 1  # connected; the clock starts once every worker is
    while start.value > 0:
        await asyncio.sleep(0.001)
    start_at = float(-start.value)
    while time.time() < start_at:
        await asyncio.sleep(0.001)
    return start_at


async def _worker_loop(scratch: str, kind: str, batch: int, seconds: float, start, budget) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    """Claim and complete (or claim and delete) batches until the run's time is up or the run has taken its
    share of the backlog (so the backlog stays near its size); return (messages, seconds)."""
    q = queries.load("bench")
    # as the dispatcher's claims do (its completions are synchronous: docs/decisions/0019); every column alike
    connection = await asyncpg.connect(scratch, server_settings={"synchronous_commit": "off"})
    destination = await connection.fetchval(q["destination_id"])
    # one batch before the clock starts: plans and PL/pgSQL functions are compiled once per connection
    await _one_batch(connection, q, kind, destination, batch)
    done = 0
    start_at = await _started(start)
    deadline = start_at + seconds
    while time.time() < deadline:
        with budget.get_lock():
            if budget.value <= 0:
                break
            budget.value -= batch
        done += await _one_batch(connection, q, kind, destination, batch)
    elapsed = time.time() - start_at
    await connection.close()
    return done, elapsed


async def _pgqueuer_loop(scratch: str, batch: int, seconds: float, start, budget) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    """PgQueuer's consumer with a no-op entrypoint, dequeuing `batch` jobs at a time, until the run's time is up
    or the run has taken its share of the backlog; return (jobs, seconds)."""
    connection = await asyncpg.connect(scratch, server_settings={"synchronous_commit": "off"})
    pgqueuer = Queries.from_asyncpg_connection(connection)

    async def consume(deadline: float, share) -> int:  # type: ignore[no-untyped-def]
        manager = QueueManager(pgqueuer)
        done, taken = 0, 0

        @manager.entrypoint(PGQUEUER_ENTRYPOINT)
        async def no_op(job: Job) -> None:
            nonlocal done, taken
            done += 1
            if done > taken:  # the run's share, taken a batch at a time as the other columns take it
                with share.get_lock():
                    if share.value <= 0:
                        manager.shutdown.set()
                        return
                    share.value -= batch
                taken += batch

        stop = asyncio.get_running_loop().call_later(max(0.0, deadline - time.time()), manager.shutdown.set)
        await manager.run(batch_size=batch)  # its jobs' completions are written by the time it returns
        stop.cancel()
        return done

    # one batch before the clock starts, as the other columns do
    await consume(time.time() + 10, multiprocessing.Value("q", batch))
    start_at = await _started(start)
    done = await consume(start_at + seconds, budget)
    elapsed = time.time() - start_at
    await connection.close()
    return done, elapsed


async def _one_batch(connection: asyncpg.Connection, q, kind: str, destination: int, batch: int) -> int:  # type: ignore[no-untyped-def]
    """Claim and complete (or delete) one batch; return the messages done."""
    if kind == "raw":
        return len(await connection.fetch(q["raw_claim_delete"], batch))
    if kind == "lifecycle":
        claimed = [row["id"] for row in await connection.fetch(q["lifecycle_claim"], batch)]
        return await connection.fetchval(q["lifecycle_complete"], claimed) if claimed else 0
    rows = await connection.fetch(q["claim"], destination, batch)
    if rows:
        await connection.fetchval(q["complete_sent"], rows[0]["claim_id"], [r["message_id"] for r in rows])
    return len(rows)


def _worker(scratch: str, kind: str, batch: int, seconds: float, start, budget, results) -> None:  # type: ignore[no-untyped-def]
    if kind == "pgqueuer":
        results.put(asyncio.run(_pgqueuer_loop(scratch, batch, seconds, start, budget)))
    else:
        results.put(asyncio.run(_worker_loop(scratch, kind, batch, seconds, start, budget)))


def _measure(scratch: str, kind: str, processes: int, batch: int, seconds: float, budget: int) -> float:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    shared_budget = context.Value("q", budget)
    # workers count themselves in once connected; then the start time goes in, negated, for all at once
    start = context.Value("d", 0.0)
    workers = [
        context.Process(target=_worker, args=(scratch, kind, batch, seconds, start, shared_budget, results))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    while start.value < processes:
        time.sleep(0.01)
    start.value = -(time.time() + 0.05)
    outcomes = [results.get(timeout=seconds + 60) for _ in workers]
    for worker in workers:
        worker.join()
    return sum(n for n, _ in outcomes) / max(elapsed for _, elapsed in outcomes)


def main(
    dsn: str,
    seconds: float = 3.0,
    large: int = 1_000_000,
    processes: tuple[int, ...] = (1, 2, 4),
    batches: tuple[int, ...] = (10, 100),
) -> None:
    scratch = recreate(dsn, DATABASE)
    _configure(scratch)
    print(
        f"dispatch benchmark: claim + complete with a null gateway and no quota, {TENANTS} tenants (one with 90%),"
        f" {seconds:g} s per run; raw = FIFO SKIP LOCKED claim + delete on a bare table of the same size;"
        " pgqueuer = PgQueuer's consumer with a no-op entrypoint draining as many jobs"
    )
    print(
        f"{'backlog':>9} {'procs':>5} {'batch':>5} {'fairlane msg/s':>15} {'floor msg/s':>12} {'raw msg/s':>10}"
        f" {'pgqueuer msg/s':>15} {'/raw':>6} {'/floor':>7} {'/pgqueuer':>10}"
    )
    by_backlog: dict[int, dict[tuple[int, int], float]] = {}
    try:
        for backlog in (10_000, large):
            for procs in processes:
                for batch in batches:
                    _top_up(scratch, backlog)
                    # each run takes at most a fifth of the backlog, so it stays near its size
                    ours = _measure(scratch, "fairlane", procs, batch, seconds, backlog // 5)
                    _top_up(scratch, backlog)
                    floor = _measure(scratch, "lifecycle", procs, batch, seconds, backlog // 5)
                    _top_up(scratch, backlog)
                    raw = _measure(scratch, "raw", procs, batch, seconds, backlog // 5)
                    _top_up(scratch, backlog)
                    peer = _measure(scratch, "pgqueuer", procs, batch, seconds, backlog // 5)
                    by_backlog.setdefault(backlog, {})[(procs, batch)] = ours
                    print(
                        f"{backlog:>9,} {procs:>5} {batch:>5} {ours:>15,.0f} {floor:>12,.0f} {raw:>10,.0f}"
                        f" {peer:>15,.0f} {ours / raw:>6.2f} {ours / floor:>7.2f} {ours / peer:>10.2f}"
                    )
        print()
        for key, ours_large in by_backlog[large].items():
            ratio = ours_large / by_backlog[10_000][key]
            print(f"{large:,} backlog against 10k, {key[0]} processes, batch {key[1]}: {ratio:.2f}")
    finally:
        drop(dsn, DATABASE)
