"""API throughput: `POST /v1/messages` requests/s and `POST /v1/messages/batch` messages/s, measured from a
separate load-generating process over loopback HTTP, against a minimal aiohttp handler that does one
database round trip (asyncpg, on a pool, from a separate process too) in the same run; prints the ratios.

Goals: single POST >= 0.5 of the minimal handler; batch >= 20x the single-POST message rate.

Runs, in order: minimal, single POST, batch, minimal again (the minimal figure is the mean of the two: the
machine is noisy). Each run is a warm-up second and then `--seconds` measured; only responses that complete
inside the measured window count, and any non-2xx answer or client error is counted and printed. 50
tenants, API keys rotated per request, per-tenant request limit off, a destination that never refuses.

Besides the rates it prints where the CPU went during the measured window (from /proc, Linux only): the
server process, the PostgreSQL backends serving the scratch database, the load generator, and the machine's
idle share and the share anything else used (other processes, PostgreSQL's WAL writer, the kernel), CPU
per request (or per message for the batch run) in microseconds.

Run: `fairlane bench api [--seconds S] [--concurrency C]`. Internally, `python -m tools.bench.api minimal --port P`
with FAIRLANE_BENCH_DSN in its environment serves the minimal handler.
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import secrets
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from db import configuration
from service.model.configuration import parse_configuration
from tools.bench.processes import TICK, Services, free_port, process_cpu
from tools.bench.scratch import drop, recreate

DATABASE = "fairlane_bench_api"
TENANTS = 50
WARMUP = 1.0
BATCH_SIZE = 1000
BATCH_CONCURRENCY = 4
PAYLOADS = 64


# --- the minimal handler: one database round trip -----------------------------------------------------


async def _no_reset(connection: Any) -> None:
    """asyncpg's default pool release sends a reset query (a second round trip); the minimal handler is
    meant to pay for exactly one."""


def _minimal_app(dsn: str) -> Any:
    import asyncpg
    from aiohttp import web

    pool_key = web.AppKey("pool", asyncpg.Pool)

    async def send(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        async with request.app[pool_key].acquire() as connection:
            recipient = await connection.fetchval("SELECT $1::text", body["to"])
        return web.json_response({"to": recipient, "status": "queued"}, status=202)

    async def database(app: web.Application) -> Any:
        app[pool_key] = await asyncpg.create_pool(dsn, min_size=2, max_size=10, reset=_no_reset)
        yield
        await app[pool_key].close()

    app = web.Application()
    app.cleanup_ctx.append(database)
    app.router.add_post("/v1/messages", send)
    return app


def _serve_minimal(port: int, dsn: str) -> None:
    from aiohttp import web

    web.run_app(
        _minimal_app(dsn),
        host="127.0.0.1",
        port=port,
        print=lambda *_: print(f"minimal listening on http://127.0.0.1:{port}", flush=True),
        access_log=None,
    )


# --- the load generator (a separate process) ------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    url: str
    keys: tuple[str, ...]
    batch: int  # 0: one message per request
    concurrency: int
    start_at: float  # time.time() when warm-up starts
    seconds: float


def _payloads(batch: int) -> list[bytes]:
    def message(n: int) -> dict[str, str]:
        return {"to": f"+1555{2_000_000 + n % 1_000_000:07d}", "body": f"Your code is {n % 10_000:04d}"}

    if not batch:
        return [json.dumps(message(n)).encode() for n in range(PAYLOADS * 16)]
    return [
        json.dumps({"messages": [message(p * batch + n) for n in range(batch)]}).encode() for p in range(PAYLOADS // 8)
    ]


def _accepted(load: Load, status: int, body: bytes) -> tuple[int, int]:
    """(messages accepted, messages refused) by one response."""
    if status >= 300:
        return 0, max(1, load.batch)
    if not load.batch:
        return 1, 0
    answer = json.loads(body)
    return int(answer["accepted"]), int(answer["rejected"])


async def _generate(load: Load) -> dict[str, Any]:
    import aiohttp

    payloads = _payloads(load.batch)
    headers = [{"Authorization": f"Bearer {key}", "Content-Type": "application/json"} for key in load.keys]
    warm_end = load.start_at + WARMUP
    end = warm_end + load.seconds
    window = {"requests": 0, "messages": 0, "refused": 0, "errors": 0, "total_messages": 0}
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    cpu: list[float] = []

    async def worker(session: aiohttp.ClientSession, index: int) -> None:
        n = index
        while time.time() < end:
            sent = time.perf_counter()
            try:
                payload, header = payloads[n % len(payloads)], headers[n % len(headers)]
                async with session.post(load.url, data=payload, headers=header) as response:
                    status, body = response.status, await response.read()
                accepted, refused = _accepted(load, status, body)
            except (aiohttp.ClientError, OSError, ValueError, KeyError) as error:
                status, accepted, refused = 0, 0, max(1, load.batch)
                statuses[type(error).__name__] = statuses.get(type(error).__name__, 0) + 1
            latency = time.perf_counter() - sent
            n += load.concurrency
            window["total_messages"] += accepted  # warm-up and tail included, to check the row count
            if not warm_end <= time.time() <= end:
                continue
            if status >= 300 or status == 0:
                window["errors"] += 1
                if status:
                    statuses[str(status)] = statuses.get(str(status), 0) + 1
                    if len(statuses) < 10:  # the first few distinct answers, to show what went wrong
                        statuses.setdefault(f"{status}: {body[:200].decode(errors='replace')}", 1)
            else:
                window["requests"] += 1
                latencies.append(latency)
            window["messages"] += accepted
            window["refused"] += refused

    async def clock() -> None:
        await asyncio.sleep(max(0.0, warm_end - time.time()))
        cpu.append(time.process_time())
        await asyncio.sleep(max(0.0, end - time.time()))
        cpu.append(time.process_time())

    connector = aiohttp.TCPConnector(limit=load.concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.sleep(max(0.0, load.start_at - time.time()))
        await asyncio.gather(clock(), *(worker(session, i) for i in range(load.concurrency)))
    latencies.sort()
    return {
        **window,
        "statuses": statuses,
        "p50": latencies[len(latencies) // 2] if latencies else None,
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else None,
        "client_cpu": cpu[1] - cpu[0] if len(cpu) == 2 else None,
    }


def _load_process(load: Load, results: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us; Ctrl-C is its to handle
    results.put(asyncio.run(_generate(load)))


# --- CPU accounting from /proc -------------------------------------------------------------------------


def _machine_cpu() -> tuple[float, float] | None:
    """(idle, total) jiffies of the whole machine."""
    try:
        fields = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except OSError:
        return None
    return fields[3] + fields[4], sum(fields[:8])


_BACKENDS = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"


@dataclass
class Snapshot:
    server: dict[int, float]
    backends: dict[int, float]
    machine: tuple[float, float] | None


def _snapshot(server_pid: int, connection: psycopg.Connection[Any]) -> Snapshot:
    pids = {pid for (pid,) in connection.execute(_BACKENDS).fetchall()}
    return Snapshot(process_cpu({server_pid}), process_cpu(pids), _machine_cpu())


def _spent(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


# --- orchestration -------------------------------------------------------------------------------------


def _configure(scratch: str) -> list[str]:
    config = {
        "tenant_sets": [{"name": "bench"}],
        "gateways": [{"name": "null", "kind": "http", "url": "http://127.0.0.1:9/"}],
        # admission control never refuses: draining 10^7 s at 10^6 segments/s
        "destinations": [{"code": "BENCH", "gateway": "null", "rate": 1_000_000, "max_drain_seconds": 10_000_000}],
        "tenants": [
            {
                "name": f"tenant{i:02d}",
                "tenant_set": "bench",
                "senders": [{"address": f"+1555{i:07d}", "type": "long_code"}],
            }
            for i in range(TENANTS)
        ],
        "routes": [{"prefix": "+1", "sender_type": "long_code", "destination": "BENCH"}],
    }
    with psycopg.connect(scratch) as connection:
        result = configuration.apply(connection, parse_configuration(config).model_dump())
    return list(result.api_keys.values())


@dataclass(frozen=True)
class Run:
    label: str
    concurrency: int
    batch: int
    outcome: dict[str, Any]
    server_cpu: float
    backend_cpu: float
    machine: tuple[float, float] | None  # (idle, total) seconds of all cores during the window
    seconds: float

    @property
    def requests_per_second(self) -> float:
        return float(self.outcome["requests"]) / self.seconds

    @property
    def messages_per_second(self) -> float:
        return float(self.outcome["messages"]) / self.seconds


def _measure(
    label: str,
    port: int,
    server: subprocess.Popen[bytes],
    scratch: str,
    keys: list[str],
    concurrency: int,
    batch: int,
    seconds: float,
) -> Run:
    path = "/v1/messages/batch" if batch else "/v1/messages"
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    start_at = time.time() + 1.5  # the load process is up (imports done) before the clock starts
    load = Load(f"http://127.0.0.1:{port}{path}", tuple(keys), batch, concurrency, start_at, seconds)
    generator = context.Process(target=_load_process, args=(load, results), daemon=True)
    generator.start()
    try:
        with psycopg.connect(scratch, autocommit=True) as connection:
            time.sleep(max(0.0, start_at + WARMUP - time.time()))
            before = _snapshot(server.pid, connection)
            time.sleep(max(0.0, start_at + WARMUP + seconds - time.time()))
            after = _snapshot(server.pid, connection)
        outcome = results.get(timeout=WARMUP + seconds + 90)
        generator.join(timeout=15)
    finally:
        if generator.is_alive():
            generator.terminate()
            generator.join()
    machine = None
    if before.machine and after.machine:
        machine = ((after.machine[0] - before.machine[0]) / TICK, (after.machine[1] - before.machine[1]) / TICK)
    return Run(
        label,
        concurrency,
        batch,
        outcome,
        _spent(before.server, after.server),
        _spent(before.backends, after.backends),
        machine,
        seconds,
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def _print_run(run: Run) -> None:
    o = run.outcome
    unit = max(1, o["messages"])  # CPU per message (per request, for single-message requests)
    client = "-" if o["client_cpu"] is None else f"{o['client_cpu'] / unit * 1e6:.0f}"
    idle = other = "-"
    if run.machine is not None and run.machine[1] > 0:
        idle_seconds, total_seconds = run.machine
        ours = run.server_cpu + run.backend_cpu + (o["client_cpu"] or 0.0)
        idle = f"{idle_seconds / total_seconds * 100:.0f}"
        other = f"{max(0.0, total_seconds - idle_seconds - ours) / total_seconds * 100:.0f}"
    print(
        f"{run.label:<22} {run.concurrency:>4} {run.requests_per_second:>9,.0f} {run.messages_per_second:>10,.0f}"
        f" {_ms(o['p50']):>7} {_ms(o['p99']):>7} {o['errors']:>7} {run.server_cpu / unit * 1e6:>8.0f}"
        f" {run.backend_cpu / unit * 1e6:>8.0f} {client:>8} {idle:>5} {other:>6}"
    )
    if other != "-" and float(other) > 15:
        print(f"  !!! {run.label}: {other}% of the machine went to other work during the run; figures are disturbed")
    if o["errors"] or o["refused"] or o["statuses"]:
        print(f"  !!! {run.label}: {o['errors']} failed requests, {o['refused']} refused messages: {o['statuses']}")


def _verdict(ratio: float, goal: float) -> str:
    return "met" if ratio >= goal else "NOT met"


def _servers(scratch: str, services: Services) -> tuple[int, int]:
    """Start the minimal handler and the API; return their ports."""
    minimal_port = free_port()
    api_port = free_port({minimal_port})
    services.start(
        "minimal",
        ["minimal", "--port", str(minimal_port)],
        ready="minimal listening",
        env={"FAIRLANE_BENCH_DSN": scratch},  # a DSN may hold a password: never on a command line
        module="tools.bench.api",
    )
    services.start(
        "api",
        ["api", "--host", "127.0.0.1", "--port", str(api_port)],
        ready="api listening",
        env={
            "DATABASE_URL": scratch,
            "FAIRLANE_ADMIN_TOKEN": secrets.token_urlsafe(24),
            "FAIRLANE_TENANT_RATE": "0",
            "FAIRLANE_LOG_LEVEL": "WARNING",
        },
    )
    return minimal_port, api_port


def _run(scratch: str, services: Services, seconds: float, concurrency: int) -> None:
    keys = _configure(scratch)
    minimal_port, api_port = _servers(scratch, services)
    minimal, api = services.processes["minimal"], services.processes["api"]
    print(
        f"api benchmark: loopback HTTP from a separate load process, {TENANTS} tenants with keys rotated per"
        f" request, {WARMUP:g} s warm-up + {seconds:g} s per run"
    )
    print(
        "minimal = an aiohttp handler that parses the JSON body and does one asyncpg round trip on a pool"
        " (no reset query on release)"
    )
    print("CPU columns: microseconds per message in the server process, its PostgreSQL backends and the load")
    print("generator; idle% and other% = the machine's idle share and the share used by anything else")
    print()
    print(
        f"{'run':<22} {'conc':>4} {'req/s':>9} {'msg/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'non-2xx':>7}"
        f" {'server':>8} {'postgres':>8} {'client':>8} {'idle%':>5} {'other%':>6}"
    )
    plan = [
        ("minimal (1)", minimal, minimal_port, concurrency, 0),
        ("single POST", api, api_port, concurrency, 0),
        (f"batch of {BATCH_SIZE}", api, api_port, BATCH_CONCURRENCY, BATCH_SIZE),
        ("minimal (2)", minimal, minimal_port, concurrency, 0),
    ]
    runs = []
    for label, server, port, workers, batch in plan:
        runs.append(_measure(label, port, server, scratch, keys, workers, batch, seconds))
        _print_run(runs[-1])
    minimal_rate = (runs[0].requests_per_second + runs[3].requests_per_second) / 2
    single, batched = runs[1], runs[2]
    print(f"{'minimal (mean)':<22} {'':>4} {minimal_rate:>9,.0f}")
    print()
    single_ratio = single.requests_per_second / max(1e-9, minimal_rate)
    batch_ratio = batched.messages_per_second / max(1e-9, single.messages_per_second)
    print(f"single POST / minimal handler: {single_ratio:.2f} (goal >= 0.5: {_verdict(single_ratio, 0.5)})")
    print(f"batch / single POST messages/s: {batch_ratio:.1f}x (goal >= 20: {_verdict(batch_ratio, 20)})")
    accepted = single.outcome["total_messages"] + batched.outcome["total_messages"]
    with psycopg.connect(scratch) as connection:
        (rows,) = connection.execute("SELECT count(*) FROM fairlane.messages").fetchone() or (0,)
    check = "ok" if rows == accepted else "!!! MISMATCH"
    print(f"rows in fairlane.messages: {rows:,}; accepted in all runs, warm-up included: {accepted:,} ({check})")
    if any(run.outcome["errors"] or run.outcome["refused"] for run in runs):
        print("!!! some requests failed; the server logs' tails:")
        for log in sorted(services.logs.glob("*.log")):
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-1500:]}")


def main(dsn: str, seconds: float = 5.0, concurrency: int = 64) -> None:
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as directory:
        services = Services(Path(directory), {})
        try:
            _run(recreate(dsn, DATABASE), services, seconds, concurrency)
        except KeyboardInterrupt:
            print("\ninterrupted; stopping the servers and dropping the scratch database", flush=True)
            raise SystemExit(130) from None
        finally:
            services.stop()
            drop(dsn, DATABASE)
    print(f"({time.monotonic() - started:.0f} s in all)")


def _arguments(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tools.bench.api")
    commands = p.add_subparsers(dest="command", required=True)
    minimal = commands.add_parser("minimal", help="serve the minimal handler")
    minimal.add_argument("--port", type=int, required=True)
    return p.parse_args(argv)


if __name__ == "__main__":
    arguments = _arguments()
    _serve_minimal(arguments.port, os.environ["FAIRLANE_BENCH_DSN"])
