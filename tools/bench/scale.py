"""Scale-out: does adding dispatcher processes leave fairness, punctuality and cost per message where they were?

Per process count N, a fresh scratch database; real `fairlane` processes on free ports: the carrier simulator
(holding the destination to 200 segments/s, burst 20, answering 429 above it), the API, and N `dispatch
--workers 1` processes (each with a metrics port), all up before any message exists. Then one destination at
200 segments/s, burst 20, three tenant sets weighted 1:2:3 each with one bulk tenant flooded through
`fairlane.outbox` (one statement, enough to stay backlogged), and a light tenant in a fourth set (weight 1)
sending 15 messages/s over HTTP, a little over half its portion. Midway, the dispatcher that is claiming
(the one whose claim count grows) is killed with SIGKILL; with N = 1 a new one is started in its place,
otherwise the others take its lease over.

Measured over the S seconds after a 5 s warm-up (from the first message at the carrier):
- fairness error: per 10 s window, max over the bulk tenants of |share - ideal| / ideal among their messages
  at the carrier (ideal 1:2:3: the light tenant takes less than its portion, so the bulk share the rest by
  weight); the worst window;
- utilisation: messages at the carrier / (200 x S);
- light p50/p99: seconds from the API's acceptance of a light message to the carrier's answer (its sent
  event), over the whole run;
- carrier worst second: the most messages the carrier took in any one-second span of the run (goal ≤ rate +
  burst = 220), and its 429s;
- CPU seconds per 1,000 messages at the carrier: the dispatcher processes (/proc; a killed one counts until
  its last reading, half a second apart) and the PostgreSQL client backends of the database other than the
  bench's and the API's, i.e. the dispatchers' (claims, completions, leases, maintenance).
First, a reference at an unlimited destination (2 dispatchers draining the same bulk with no quota): CPU per
1,000 messages there, which each row is compared with (goal: within 1.5x). Goals on this 2-core machine:
fairness error ≤ 2% and utilisation ≥ 98% at every N; light p99 at 16 within 2x of at 2; CPU per message flat.

Run: `fairlane bench scale [--processes 1,2,4,8,16] [--seconds 60]`.
"""

import asyncio
import collections
import json
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import psycopg
from prometheus_client.parser import text_string_to_metric_families

from db import configuration, queries
from service.model.configuration import parse_configuration
from tools.bench.processes import Services, free_port, process_cpu, with_application_name
from tools.bench.scratch import drop, recreate

DATABASE = "fairlane_bench_scale"
RATE, BURST = 200, 20
SETS = {"s1": 1, "s2": 2, "s3": 3}
"""Tenant sets of the bulk tenants and their weights; each set's bulk tenant is named after it."""
LIGHT_RATE = 15.0
WARMUP = 5.0
WINDOW = 10.0
SAMPLE = 0.5
OURS = ("fairlane bench", "fairlane bench api")
"""Application names of connections not counted as the dispatchers' (the bench's own, the API's)."""
UNLIMITED = 1_000_000


# --- pure figures ------------------------------------------------------------------------------------------


def fairness_errors(arrivals: Sequence[tuple[float, str]], start: float, end: float) -> list[float]:
    """Per WINDOW-second window of [start, end), the bulk tenants' fairness error: max over them of
    |measured share - ideal share| / ideal share, the ideal being their weights' proportions."""
    total_weight = sum(SETS.values())
    errors = []
    for first in range(int((end - start) // WINDOW)):
        low = start + first * WINDOW
        counts = collections.Counter(tenant for at, tenant in arrivals if low <= at < low + WINDOW and tenant in SETS)
        served = sum(counts.values())
        if not served:
            errors.append(1.0)
            continue
        errors.append(max(abs(counts[t] / served - w / total_weight) / (w / total_weight) for t, w in SETS.items()))
    return errors


def worst_second(times: Sequence[float]) -> int:
    """The most of `times` within any one-second span."""
    window: collections.deque[float] = collections.deque()
    worst = 0
    for t in sorted(times):
        window.append(t)
        while window[0] <= t - 1.0:
            window.popleft()
        worst = max(worst, len(window))
    return worst


def claim_count(exposition: str) -> float:
    """Claims a dispatcher has made: the count of its fairlane_claim_seconds histogram over destinations."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        if family.name == "fairlane_claim_seconds"
        for sample in family.samples
        if sample.name == "fairlane_claim_seconds_count"
    )


@dataclass
class CpuMeter:
    """CPU seconds processes spent since `start`: each process's last reading less its reading at the start
    (0 for one that started later)."""

    baseline: dict[int, float] = field(default_factory=dict)
    last: dict[int, float] = field(default_factory=dict)

    def start(self, readings: Mapping[int, float]) -> None:
        self.baseline = dict(readings)
        self.last = dict(readings)

    def read(self, readings: Mapping[int, float]) -> None:
        self.last.update(readings)

    @property
    def seconds(self) -> float:
        return sum(value - self.baseline.get(pid, 0.0) for pid, value in self.last.items())


# --- the processes -----------------------------------------------------------------------------------------


@dataclass
class Run:
    """The processes of one run and where they listen."""

    scratch: str
    services: Services
    simulator: str
    api: str
    keys: dict[str, str]
    ports: set[int]
    dispatchers: dict[str, int] = field(default_factory=dict)
    """Dispatcher process name -> its metrics port (a killed one stays here, out of services.processes)."""

    def add_dispatcher(self) -> None:
        name = f"dispatcher-{len(self.dispatchers) + 1}"
        port = free_port(self.ports)
        self.ports.add(port)
        self.services.start(name, ["dispatch", "--workers", "1", "--metrics-port", str(port)])
        self.dispatchers[name] = port

    def alive(self) -> dict[str, int]:
        return {name: port for name, port in self.dispatchers.items() if name in self.services.processes}


def _configure(scratch: str, simulator_port: int, rate: float, burst: int) -> dict[str, str]:
    """One destination X, the bulk tenants and the light one; returns their API keys."""
    sets = {**SETS, "light": 1}
    config = {
        "tenant_sets": [{"name": name, "weight": weight} for name, weight in sets.items()],
        "gateways": [{"name": "sim", "kind": "simulator", "url": f"http://127.0.0.1:{simulator_port}/messages"}],
        "destinations": [{"code": "X", "gateway": "sim", "rate": rate, "burst": burst, "max_drain_seconds": 10**7}],
        "tenants": [
            {"name": name, "tenant_set": name, "senders": [{"address": f"+1999000000{i}", "type": "long_code"}]}
            for i, name in enumerate(sets)
        ],
        "routes": [{"prefix": "+1", "sender_type": "long_code", "destination": "X"}],
    }
    with psycopg.connect(scratch) as connection:
        return dict(configuration.apply(connection, parse_configuration(config).model_dump()).api_keys)


def _start(dsn: str, logs: Path, processes: int, limited: bool) -> Run:
    """A fresh scratch database, the simulator, the API and `processes` dispatchers (not yet known to be up)."""
    rate, burst = (RATE, BURST) if limited else (UNLIMITED, UNLIMITED)
    scratch = recreate(dsn, DATABASE)
    simulator_port = free_port()
    api_port = free_port({simulator_port})
    keys = _configure(scratch, simulator_port, rate, burst)
    limits = f'[destinations."X"]\nrate = {rate}\nburst = {burst}\n' if limited else ""
    (logs / "simulator.toml").write_text(f"latency_ms = [1, 3]\n{limits}")
    env = {"DATABASE_URL": scratch, "FAIRLANE_LOG_LEVEL": "WARNING", "FAIRLANE_ADMIN_TOKEN": secrets.token_urlsafe(24)}
    services = Services(logs, env)
    run = Run(
        scratch,
        services,
        f"http://127.0.0.1:{simulator_port}",
        f"http://127.0.0.1:{api_port}",
        keys,
        {simulator_port, api_port},
    )
    simulator = ["simulator", "--port", str(simulator_port), "--config", str(logs / "simulator.toml")]
    services.start("simulator", simulator, ready="simulator listening")
    api_env = {"DATABASE_URL": with_application_name(scratch, OURS[1])}
    services.start("api", ["api", "--port", str(api_port)], ready="api listening", env=api_env)
    for _ in range(processes):
        run.add_dispatcher()
    return run


# --- driving a run -----------------------------------------------------------------------------------------


async def _get(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        response.raise_for_status()
        return await response.text()


async def _until_up(session: aiohttp.ClientSession, run: Run) -> None:
    """Until every dispatcher answers on its metrics port (it has started its loops)."""
    deadline = time.monotonic() + 120
    for port in run.dispatchers.values():
        while True:
            try:
                await _get(session, f"http://127.0.0.1:{port}/metrics")
                break
            except (aiohttp.ClientError, TimeoutError):
                run.services.check()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"a dispatcher (metrics port {port}) did not start") from None
                await asyncio.sleep(0.1)


async def _received(session: aiohttp.ClientSession, run: Run) -> int:
    return int(json.loads(await _get(session, f"{run.simulator}/stats"))["received"])


async def _until_received(session: aiohttp.ClientSession, run: Run, count: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while await _received(session, run) < count:
        run.services.check()
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def _claiming(session: aiohttp.ClientSession, run: Run) -> str:
    """The dispatcher whose claims grow (the one holding the destination's lease)."""

    async def counts() -> dict[str, float]:
        return {
            name: claim_count(await _get(session, f"http://127.0.0.1:{port}/metrics"))
            for name, port in run.alive().items()
        }

    before = await counts()
    await asyncio.sleep(SAMPLE)
    after = await counts()
    return max(after, key=lambda name: after[name] - before.get(name, 0.0))


async def _cpu(pool: asyncpg.Pool, run: Run) -> tuple[dict[int, float], dict[int, float]]:
    """CPU seconds so far of the dispatcher processes and of the dispatchers' PostgreSQL backends."""
    backends = [r["pid"] for r in await pool.fetch(queries.load("bench")["scale_backends"], list(OURS))]
    dispatchers = [run.services.processes[name].pid for name in run.alive()]
    return process_cpu(dispatchers), process_cpu(backends)


async def _light(
    session: aiohttp.ClientSession, run: Run, stop: asyncio.Event, refused: collections.Counter[str]
) -> None:
    """LIGHT_RATE single POSTs a second until `stop`, each to a recipient of its own."""
    headers = {"Authorization": f"Bearer {run.keys['light']}"}
    started = time.monotonic()
    sent = 0
    while not stop.is_set():
        sent += 1
        body = {"to": f"+1777{sent:07d}", "body": f"Your code is {sent % 10_000:04d}"}
        async with session.post(f"{run.api}/v1/messages", json=body, headers=headers) as response:
            if response.status != 202:
                refused[str((await response.json())["error"]["code"])] += 1
        await asyncio.sleep(max(0.0, started + sent / LIGHT_RATE - time.monotonic()))


@dataclass(frozen=True)
class Figures:
    fairness: float
    """The worst 10 s window's fairness error."""
    utilisation: float
    light: tuple[int, int, float | None, float | None]
    """Light messages accepted, sent, p50 and p99 seconds from acceptance to sent."""
    worst_second: int
    throttled: int
    messages: int
    """Messages at the carrier in the measured window."""
    dispatcher_cpu: float
    postgres_cpu: float
    refused: int

    @property
    def cpu(self) -> float:
        """Dispatchers' and their backends' CPU seconds per 1,000 messages."""
        return 1000 * (self.dispatcher_cpu + self.postgres_cpu) / max(self.messages, 1)


def _bulk_per_tenant(seconds: float) -> int:
    """Enough for each bulk tenant to stay backlogged (none gets more than half the rate) with room to spare."""
    return int(RATE / 2 * (WARMUP + seconds + 60))


async def _light_waits(pool: asyncpg.Pool) -> asyncpg.Record:
    """The light tenant's figures, once all its messages were sent (or a minute has passed)."""
    deadline = time.monotonic() + 60
    while True:
        row = await pool.fetchrow(queries.load("bench")["scale_light_waits"], "light")
        if row["sent"] >= row["messages"] or time.monotonic() > deadline:
            return row
        await asyncio.sleep(0.2)


async def _scale_run(run: Run, seconds: float) -> Figures:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
        asyncpg.create_pool(with_application_name(run.scratch, OURS[0]), min_size=1, max_size=2) as pool,
    ):
        await _until_up(session, run)
        await pool.execute(queries.load("bench")["scale_flood"], list(SETS), _bulk_per_tenant(seconds))
        stop, refused = asyncio.Event(), collections.Counter[str]()
        light = asyncio.create_task(_light(session, run, stop, refused))
        try:
            if not await _until_received(session, run, 1, 60):
                raise RuntimeError("no message reached the carrier simulator within 60 s")
            first = time.monotonic()
            await asyncio.sleep(WARMUP)
            dispatchers, backends = CpuMeter(), CpuMeter()
            readings = await _cpu(pool, run)
            dispatchers.start(readings[0])
            backends.start(readings[1])
            started, killed = time.monotonic(), False
            while (elapsed := time.monotonic() - started) < seconds:
                if not killed and elapsed >= seconds / 2:
                    run.services.kill_one(await _claiming(session, run))
                    killed = True
                    if not run.alive():
                        run.add_dispatcher()  # a lone dispatcher killed: one starts in its place
                run.services.check()
                readings = await _cpu(pool, run)
                dispatchers.read(readings[0])
                backends.read(readings[1])
                await asyncio.sleep(SAMPLE)
        finally:
            stop.set()
            await light
        light_row = await _light_waits(pool)
        received = json.loads(await _get(session, f"{run.simulator}/received"))
        stats = json.loads(await _get(session, f"{run.simulator}/stats"))
    times = [m["at"] for m in received]
    # the simulator's clock starts at its own start: its first arrival is the bench's `first`
    window_start = min(times) + (started - first)
    window_end = window_start + seconds
    in_window = sum(1 for t in times if window_start <= t < window_end)
    arrivals = [(m["at"], m["tenant"]) for m in received]
    return Figures(
        fairness=max(fairness_errors(arrivals, window_start, window_end), default=1.0),
        utilisation=in_window / (RATE * seconds),
        light=(light_row["messages"], light_row["sent"], light_row["p50"], light_row["p99"]),
        worst_second=worst_second(times),
        throttled=sum(stats["throttled"].values()),
        messages=in_window,
        dispatcher_cpu=dispatchers.seconds,
        postgres_cpu=backends.seconds,
        refused=sum(refused.values()),
    )


async def _reference_run(run: Run, per_tenant: int) -> Figures:
    """The bulk alone at an unlimited destination, from the flood to its last message at the carrier."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
        asyncpg.create_pool(with_application_name(run.scratch, OURS[0]), min_size=1, max_size=2) as pool,
    ):
        await _until_up(session, run)
        dispatchers, backends = CpuMeter(), CpuMeter()
        readings = await _cpu(pool, run)
        dispatchers.start(readings[0])
        backends.start(readings[1])
        await pool.execute(queries.load("bench")["scale_flood"], list(SETS), per_tenant)
        total, deadline = len(SETS) * per_tenant, time.monotonic() + 600
        while await _received(session, run) < total:
            run.services.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the unlimited destination did not drain {total:,} messages in 10 minutes")
            readings = await _cpu(pool, run)
            dispatchers.read(readings[0])
            backends.read(readings[1])
            await asyncio.sleep(SAMPLE)
        readings = await _cpu(pool, run)
        dispatchers.read(readings[0])
        backends.read(readings[1])
    return Figures(0.0, 1.0, (0, 0, None, None), 0, 0, total, dispatchers.seconds, backends.seconds, 0)


def _measure(dsn: str, logs: Path, processes: int, seconds: float, limited: bool) -> Figures:
    """One run: start, drive, stop; raises (its processes killed) when something failed."""
    logs.mkdir()
    run = _start(dsn, logs, processes, limited)
    stopped = False
    try:
        if limited:
            figures = asyncio.run(_scale_run(run, seconds))
        else:
            figures = asyncio.run(_reference_run(run, _bulk_per_tenant(seconds) // 2))
        statuses = run.services.stop()
        stopped = True
    finally:
        if not stopped:
            run.services.kill()
    failed = {name: status for name, status in statuses.items() if status != 0}
    if failed:
        raise RuntimeError(f"exited with a failure: {failed}")
    return figures


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"


HEADER = (
    f"{'processes':>9} {'fairness error':>14} {'utilisation':>11} {'light p50 ms':>12} {'p99 ms':>7}"
    f" {'carrier worst s':>15} {'429s':>5} {'CPU s/1000: dispatchers':>23} {'PostgreSQL':>10} {'total':>6}"
    f" {'vs unlimited':>12}"
)


def _line(processes: int, f: Figures, reference: Figures) -> str:
    thousand = 1000 / max(f.messages, 1)
    light = f"{_ms(f.light[2]):>12} {_ms(f.light[3]):>7}"
    if f.light[1] < f.light[0]:
        light += f" ({f.light[0] - f.light[1]} of {f.light[0]} light messages unsent)"
    return (
        f"{processes:>9} {f.fairness:>14.1%} {f.utilisation:>11.1%} {light} {f.worst_second:>15} {f.throttled:>5}"
        f" {f.dispatcher_cpu * thousand:>23.2f} {f.postgres_cpu * thousand:>10.2f} {f.cpu:>6.2f}"
        f" {f.cpu / reference.cpu:>11.2f}×"
    )


def goals(rows: Mapping[int, Figures], reference: Figures) -> list[str]:
    lines = [
        f"fairness error ≤ 2% at every count: worst {max(f.fairness for f in rows.values()):.1%};"
        f" utilisation ≥ 98%: lowest {min(f.utilisation for f in rows.values()):.1%};"
        f" carrier worst second ≤ {RATE + BURST}: {max(f.worst_second for f in rows.values())}"
    ]
    if 2 in rows and 16 in rows and rows[2].light[3] and rows[16].light[3] is not None:
        lines.append(f"light p99 at 16 processes / at 2 (goal ≤ 2×): {rows[16].light[3] / rows[2].light[3]:.2f}×")
    cpu = [f.cpu for f in rows.values()]
    lines.append(
        f"CPU per message (goal: flat, within 1.5× of the unlimited destination's {reference.cpu:.2f} s/1000):"
        f" {min(cpu):.2f}–{max(cpu):.2f} s/1000, highest / lowest {max(cpu) / min(cpu):.2f}×,"
        f" highest / unlimited {max(cpu) / reference.cpu:.2f}×"
    )
    return lines


def main(dsn: str, processes: Sequence[int] = (1, 2, 4, 8, 16), seconds: float = 60.0) -> None:
    logs = Path(tempfile.mkdtemp(prefix="fairlane-scale-"))
    print(
        f"scale-out: one destination at {RATE} segments/s (burst {BURST}), bulk tenants in sets weighted"
        f" {':'.join(str(w) for w in SETS.values())} flooded through fairlane.outbox, a light tenant at"
        f" {LIGHT_RATE:g} messages/s over HTTP, the claiming dispatcher killed -9 midway; {seconds:g} s measured"
        f" after {WARMUP:g} s of warm-up",
        flush=True,
    )
    failed = True
    try:
        reference = _measure(dsn, logs / "unlimited", 2, seconds, limited=False)
        print(
            f"unlimited destination, 2 processes: {reference.messages:,} messages,"
            f" {reference.dispatcher_cpu * 1000 / reference.messages:.2f} + "
            f"{reference.postgres_cpu * 1000 / reference.messages:.2f} = {reference.cpu:.2f} CPU s/1000 messages"
            " (dispatchers + PostgreSQL)",
            flush=True,
        )
        print(HEADER, flush=True)
        rows: dict[int, Figures] = {}
        for count in processes:
            rows[count] = _measure(dsn, logs / f"{count}-processes", count, seconds, limited=True)
            print(_line(count, rows[count], reference), flush=True)
        refused = sum(f.refused for f in rows.values())
        if refused:
            print(f"light messages the API refused: {refused}")
        print(*goals(rows, reference), sep="\n")
        failed = False
    finally:
        drop(dsn, DATABASE)
        if failed:
            print(f"the scale benchmark failed; the processes' logs are in {logs}", file=sys.stderr)
        else:
            shutil.rmtree(logs)
