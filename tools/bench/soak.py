"""Soak: a steady mix at R messages/s for M minutes through the whole service, with retention set short so
that pruning runs during the soak; does it stay fast, stay small and lose nothing?

A scratch database next to the one in use; real `fairlane` processes on free ports (`api`, `dispatch --workers
2 --metrics-port P`, `callbacks`, `simulator` sending receipts to the API), logs in a temporary directory
(kept, and named, when the soak fails); three tenants whose status callbacks go to a receiver in this process;
two destinations each with a quota of 2R (so the service keeps up), 120 s validity, finished messages kept
5 minutes (`[retention]` in the configuration applied before any process starts, so the partitions of
finished messages have that retention's width from the first; `PUT /v1/admin/retention` reads it back). The
carrier simulator answers in 1-5 ms, fails 0.2% transiently and 0.1% permanently, reports 2% undelivered and
sends 1% of receipts twice. Of every R messages a second, half go as single `POST /v1/messages`, 30% in
`POST /v1/messages/batch` of 10, 20% as `INSERT INTO fairlane.outbox` of 5 rows.

Each minute it prints messages in (accepted), refused, and out (reached the carrier simulator), claim p50/p99
and queue wait p99 (the dispatchers' `fairlane_claim_seconds` and `fairlane_queue_wait_seconds` histograms,
from the minute's bucket deltas), callback lag p99 (the receiver's arrival time less the event's `data.at`),
the total size of schema fairlane's tables with their indexes, TOAST and partitions, their dead tuples and
partitions.
At the end, the goals' figures: the last five minutes' p99s against the first five minutes' (goal ≤ 1.2×),
the total size against its size when the retention window had filled (goal: within 10%), and messages lost
(goal: none). A message is told apart by its recipient, unique in the soak, so "lost" needs no database row
(retention prunes them): every accepted recipient must have reached the receiver with a status callback of
a terminal status (delivered, undelivered, failed, expired; sent counts, and is shown, when its receipt
never came). Run: `fairlane bench soak [--minutes 30] [--rate 50]`.
"""

import asyncio
import json
import math
import secrets
import shutil
import socket
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import psycopg
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from db import configuration, queries
from service.model.configuration import parse_configuration
from tools.bench.processes import Services, free_port, port_is_free
from tools.bench.scratch import drop, recreate

DATABASE = "fairlane_bench_soak"
RETENTION = "5m"
VALIDITY_SECONDS = 120
TENANTS = ("alpha", "bravo", "charlie")
PREFIXES = {"SOAK-A": "+1555", "SOAK-B": "+1666"}  # destination: recipients' prefix (its route)
MIX = {"single": 0.5, "batch": 0.3, "sql": 0.2}
GROUP = {"single": 1, "batch": 10, "sql": 5}  # messages per request or statement
FINAL = frozenset({"delivered", "undelivered", "failed", "expired", "canceled"})
TERMINAL = FINAL | {"sent"}
GOAL_MINUTES = 5

# --- pure helpers ------------------------------------------------------------------------------------------


def histogram(exposition: str, name: str) -> dict[float, float]:
    """Cumulative bucket counts by upper bound of histogram `name` in a Prometheus text exposition, summed over
    its label sets (destinations)."""
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(exposition):
        if family.name == name:
            for sample in family.samples:
                if sample.name == f"{name}_bucket":
                    bound = float(sample.labels["le"])
                    buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return buckets


def delta(now: Mapping[float, float], before: Mapping[float, float]) -> dict[float, float]:
    """Observations between two readings of one process's cumulative buckets; all of `now` when a count went
    down (the process restarted, its counters with it)."""
    if any(count < before.get(bound, 0.0) for bound, count in now.items()):
        return dict(now)
    return {bound: count - before.get(bound, 0.0) for bound, count in now.items()}


def add(*readings: Mapping[float, float]) -> dict[float, float]:
    total: dict[float, float] = {}
    for reading in readings:
        for bound, count in reading.items():
            total[bound] = total.get(bound, 0.0) + count
    return total


def quantile(buckets: Mapping[float, float], q: float) -> float | None:
    """The q-quantile of cumulative bucket counts, linear within the bucket it falls in (histogram_quantile's
    rule: the first bucket starts at 0; in the +Inf bucket, the highest finite bound); None without any."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank and count > below:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def exact_quantile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank q-quantile; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def ratio(later: float | None, earlier: float | None) -> str:
    if later is None or earlier is None or earlier <= 0:
        return "n/a"
    return f"{later / earlier:.2f}×"


class Mix:
    """Which way the next message goes: the way furthest behind its share of the messages so far."""

    def __init__(self, shares: Mapping[str, float]) -> None:
        self.shares = dict(shares)
        self.counts = dict.fromkeys(shares, 0)

    def next(self) -> str:
        total = sum(self.counts.values()) + 1
        way = max(self.shares, key=lambda w: self.shares[w] * total - self.counts[w])
        self.counts[way] += 1
        return way


# --- the processes -----------------------------------------------------------------------------------------


def _wait_for_metrics(services: Services, ports: Sequence[int]) -> None:
    deadline = time.monotonic() + 60
    for port in ports:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2):
                    break
            except OSError:
                services.check()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the dispatcher on metrics port {port} did not start") from None
                time.sleep(0.1)


def _configure(scratch: str, rate: float, simulator_port: int, receipts_token: str, hook: str) -> dict[str, str]:
    """Apply the soak's configuration; returns each tenant's API key."""
    config = {
        # the hook listens on loopback over plain http: callbacks may reach it
        "callbacks": {"allow_networks": ["127.0.0.0/8"], "allow_http": True},
        "retention": {"finished_messages": RETENTION},
        "tenant_sets": [{"name": "soak"}],
        "gateways": [
            {
                "name": "sim",
                "kind": "simulator",
                "url": f"http://127.0.0.1:{simulator_port}/messages",
                "receipts_token": receipts_token,
            }
        ],
        "destinations": [
            {"code": code, "gateway": "sim", "rate": 2 * rate, "default_validity_seconds": VALIDITY_SECONDS}
            for code in PREFIXES
        ],
        "tenants": [
            {
                "name": name,
                "tenant_set": "soak",
                "status_callback": hook,
                "senders": [{"address": f"+1999000000{index}", "type": "long_code"}],
            }
            for index, name in enumerate(TENANTS)
        ],
        "routes": [
            {"prefix": prefix, "sender_type": "long_code", "destination": code} for code, prefix in PREFIXES.items()
        ],
    }
    with psycopg.connect(scratch) as connection:
        return dict(configuration.apply(connection, parse_configuration(config).model_dump()).api_keys)


# --- the traffic and the receiver --------------------------------------------------------------------------


class Receiver:
    """The tenants' status callback URL: the terminal status each recipient reached and each callback's lag."""

    def __init__(self) -> None:
        self.event_ids: set[str] = set()
        self.terminal: dict[str, str] = {}
        self.lags: list[float] = []
        self.duplicates = 0

    async def hook(self, request: web.Request) -> web.Response:
        arrived = time.time()
        body = await request.read()
        event_id = request.headers.get("webhook-id", "")
        if event_id in self.event_ids:  # at least once: a callback may come again
            self.duplicates += 1
            return web.Response(status=204)
        self.event_ids.add(event_id)
        data = json.loads(body)["data"]
        self.lags.append(arrived - datetime.fromisoformat(data["at"]).timestamp())
        status, recipient = data["status"], data["to"]
        # final statuses are absorbing; sent counts until the receipt's status comes (in whatever order)
        if status in FINAL or (status in TERMINAL and recipient not in self.terminal):
            self.terminal[recipient] = status
        return web.Response(status=204)


class Sender:
    """Messages at a steady rate, each to a recipient of its own, the ways mixed as MIX says."""

    def __init__(self, api: str, keys: Mapping[str, str], pool: asyncpg.Pool, session: aiohttp.ClientSession) -> None:
        self.api = api
        self.keys = dict(keys)
        self.pool = pool
        self.session = session
        self.accepted: set[str] = set()
        self.rejected: Counter[str] = Counter()
        self.sequence = 0
        self.turn = 0
        self.in_flight: set[asyncio.Task[None]] = set()
        self.room = asyncio.Semaphore(256)
        self.errors: list[BaseException] = []

    def recipient(self) -> str:
        self.sequence += 1
        prefixes = list(PREFIXES.values())
        return f"{prefixes[self.sequence % len(prefixes)]}{self.sequence:07d}"

    def tenant(self) -> str:
        self.turn += 1
        return TENANTS[self.turn % len(TENANTS)]

    def _message(self, recipient: str) -> dict[str, Any]:
        return {"to": recipient, "body": f"Your soak code is {recipient[-7:]}", "validity_seconds": VALIDITY_SECONDS}

    async def _post(self, path: str, tenant: str, body: dict[str, Any]) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.keys[tenant]}"}
        async with self.session.post(f"{self.api}{path}", json=body, headers=headers) as response:
            return response.status, await response.json()

    async def single(self, recipient: str) -> None:
        status, answer = await self._post("/v1/messages", self.tenant(), self._message(recipient))
        if status == 202:
            self.accepted.add(recipient)
        else:
            self.rejected[answer["error"]["code"]] += 1

    async def batch(self, recipients: list[str]) -> None:
        body = {"messages": [self._message(recipient) for recipient in recipients]}
        status, answer = await self._post("/v1/messages/batch", self.tenant(), body)
        if status != 200:
            self.rejected[answer["error"]["code"]] += len(recipients)
            return
        for result in answer["results"]:
            if result["status"] == 202:
                self.accepted.add(recipients[result["index"]])
            else:
                self.rejected[result["error"]["code"]] += 1

    async def sql(self, recipients: list[str]) -> None:
        tenants = [self.tenant() for _ in recipients]
        try:
            await self.pool.execute(queries.load("bench")["soak_outbox"], tenants, recipients, VALIDITY_SECONDS)
        except asyncpg.PostgresError as error:
            self.rejected[f"SQLSTATE {error.sqlstate}"] += len(recipients)
        else:
            self.accepted.update(recipients)

    async def _guarded(self, way: str, recipients: list[str]) -> None:
        try:
            if way == "single":
                await self.single(recipients[0])
            elif way == "batch":
                await self.batch(recipients)
            else:
                await self.sql(recipients)
        except (aiohttp.ClientError, TimeoutError):
            self.rejected["no answer"] += len(recipients)  # perhaps accepted: not counted, not checked
        except Exception as error:  # a bug of the soak: reported at the end of the sending
            self.errors.append(error)
        finally:
            self.room.release()

    async def submit(self, way: str, recipients: list[str]) -> None:
        await self.room.acquire()  # a slow service holds the sending back rather than piling up requests
        task = asyncio.create_task(self._guarded(way, recipients))
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)

    async def run(self, rate: float, seconds: float) -> None:
        """`rate` messages a second for `seconds`; requests that are not full yet go out each second."""
        mix = Mix(MIX)
        waiting: dict[str, list[str]] = {way: [] for way in MIX}
        started = time.monotonic()
        issued, second = 0, 0
        while (elapsed := time.monotonic() - started) < seconds:
            for _ in range(int(rate * elapsed) - issued):
                issued += 1
                way = mix.next()
                waiting[way].append(self.recipient())
                if len(waiting[way]) >= GROUP[way]:
                    await self.submit(way, waiting[way])
                    waiting[way] = []
            if int(elapsed) != second:
                second = int(elapsed)
                for way, recipients in waiting.items():
                    if recipients:
                        await self.submit(way, recipients)
                        waiting[way] = []
            await asyncio.sleep(0.02)
        for way, recipients in waiting.items():
            if recipients:
                await self.submit(way, recipients)
        await asyncio.gather(*self.in_flight)
        if self.errors:
            raise self.errors[0]


# --- each minute, and the goals ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Minute:
    accepted: int
    refused: int
    out: int
    claim: dict[float, float]
    wait: dict[float, float]
    lags: list[float]
    sizes: dict[str, int]
    """Bytes by relation (a table with its indexes and TOAST, each partition on its own)."""
    dead: int
    partitions: int

    @property
    def size(self) -> int:
        return sum(self.sizes.values())


async def _get(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url) as response:
        response.raise_for_status()
        return await response.text()


async def _simulator_stats(session: aiohttp.ClientSession, simulator: str) -> dict[str, Any]:
    return dict(json.loads(await _get(session, f"{simulator}/stats")))


@dataclass
class Sampler:
    session: aiohttp.ClientSession
    pool: asyncpg.Pool
    sender: Sender
    receiver: Receiver
    simulator: str
    metrics_ports: tuple[int, ...]
    before: dict[tuple[int, str], dict[float, float]] = field(default_factory=dict)
    accepted: int = 0
    refused: int = 0
    out: int = 0

    async def _buckets(self, name: str) -> dict[float, float]:
        """This minute's observations of histogram `name`, over the dispatchers."""
        minute: dict[float, float] = {}
        for port in self.metrics_ports:
            try:
                now = histogram(await _get(self.session, f"http://127.0.0.1:{port}/metrics"), name)
            except (aiohttp.ClientError, TimeoutError):
                continue  # restarting: its observations count next minute (or, restarted, are gone)
            minute = add(minute, delta(now, self.before.get((port, name), {})))
            self.before[(port, name)] = now
        return minute

    async def sample(self) -> Minute:
        claim = await self._buckets("fairlane_claim_seconds")
        wait = await self._buckets("fairlane_queue_wait_seconds")
        out = int((await _simulator_stats(self.session, self.simulator))["received"])
        relations = await self.pool.fetch(queries.load("bench")["soak_relations"])
        lags, self.receiver.lags = self.receiver.lags, []
        accepted, refused = len(self.sender.accepted), sum(self.sender.rejected.values())
        minute = Minute(
            accepted - self.accepted,
            refused - self.refused,
            out - self.out,
            claim,
            wait,
            lags,
            {r["relation"]: r["bytes"] for r in relations},
            sum(r["dead_tuples"] for r in relations),
            sum(r["partition"] for r in relations),
        )
        self.accepted, self.refused, self.out = accepted, refused, out
        return minute


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


HEADER = (
    f"{'minute':>6} {'in':>7} {'refused':>7} {'out':>7} {'claim p50':>9} {'p99 ms':>7} {'wait p99 ms':>11}"
    f" {'callback p99 ms':>15} {'size MB':>8} {'dead tuples':>11} {'partitions':>10}"
)


def _line(number: int, m: Minute) -> str:
    return (
        f"{number:>6} {m.accepted:>7,} {m.refused:>7,} {m.out:>7,} {_ms(quantile(m.claim, 0.5)):>9}"
        f" {_ms(quantile(m.claim, 0.99)):>7}"
        f" {_ms(quantile(m.wait, 0.99)):>11} {_ms(exact_quantile(m.lags, 0.99)):>15} {m.size / 1e6:>8.1f}"
        f" {m.dead:>11,} {m.partitions:>10}"
    )


def fill_minute(retention_seconds: int) -> int:
    """The minute by whose end the retention window has filled: a finished message lives for the retention
    plus at most its partition's width (as fairlane.history_partition_seconds_v1 chooses it: the largest of
    1 min, 5 min, 15 min, 1 h, 6 h and 1 day within a quarter of the retention), then a minute of slack for the
    maintenance leader to drop the partition."""
    width = max([w for w in (60, 300, 900, 3600, 21600, 86400) if w <= retention_seconds / 4], default=60)
    return math.ceil((retention_seconds + width) / 60) + 1


def goals(minutes: list[Minute], retention_seconds: int | None) -> list[str]:
    lines = []
    k = min(GOAL_MINUTES, len(minutes) // 2)
    if k:
        first, last = minutes[:k], minutes[-k:]
        span = "minute's" if k == 1 else f"{k} minutes'"
        lines.append(f"p99 of the last {span} against the first {span} (goal ≤ 1.2×):")
        for label, earlier, later in (
            ("claim", quantile(add(*(m.claim for m in first)), 0.99), quantile(add(*(m.claim for m in last)), 0.99)),
            ("queue wait", quantile(add(*(m.wait for m in first)), 0.99), quantile(add(*(m.wait for m in last)), 0.99)),
            (
                "callback lag",
                exact_quantile([lag for m in first for lag in m.lags], 0.99),
                exact_quantile([lag for m in last for lag in m.lags], 0.99),
            ),
        ):
            lines.append(f"  {label:<13} {_ms(earlier):>8} ms → {_ms(later):>8} ms: {ratio(later, earlier)}")
    if retention_seconds is None:
        lines.append("total size: not judged, retention is not available (nothing was pruned)")
    elif len(minutes) <= fill_minute(retention_seconds):
        lines.append(
            f"total size: not judged, the retention window ({retention_seconds} s) fills by minute"
            f" {fill_minute(retention_seconds)}: soak longer"
        )
    else:
        filled = minutes[fill_minute(retention_seconds) - 1 :]
        base = filled[0].size
        low, high = min(m.size for m in filled) / base, max(m.size for m in filled) / base
        lines.append(
            f"total size (goal: within 10% once the retention window has filled): {base / 1e6:.1f} MB at minute"
            f" {fill_minute(retention_seconds)}, {minutes[-1].size / 1e6:.1f} MB now:"
            f" {ratio(minutes[-1].size, base)} (range {low:.2f}–{high:.2f}×)"
        )
    if len(minutes) > 1:
        lines.append(f"  grew most since minute 1: {growth(minutes[0].sizes, minutes[-1].sizes)}")
    return lines


def growth(before: Mapping[str, int], now: Mapping[str, int], top: int = 4) -> str:
    """The relations that grew most between two readings (a partition made since counts from nothing)."""
    grown = sorted(((now[r] - before.get(r, 0), r) for r in now), reverse=True)[:top]
    return ", ".join(f"{relation} +{change / 1e6:.1f} MB" for change, relation in grown if change > 0) or "none"


async def _retention(session: aiohttp.ClientSession, api: str, token: str) -> int | None:
    """Finished messages kept RETENTION; None when the service has no such setting (404)."""
    headers = {"Authorization": f"Bearer {token}"}
    body = {"finished_messages": RETENTION}
    async with session.put(f"{api}/v1/admin/retention", json=body, headers=headers) as response:
        if response.status == 404:
            return None
        answer = await response.json()
        if response.status >= 300:
            raise RuntimeError(f"PUT /v1/admin/retention answered {response.status}: {answer}")
        return int(answer["seconds"])


async def _until(condition: Callable[[], bool], seconds: float, services: Services) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        services.check()
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True


@dataclass(frozen=True)
class Plan:
    scratch: str
    api: str
    simulator: str
    metrics_ports: tuple[int, ...]
    token: str
    keys: dict[str, str]
    hook: socket.socket
    minutes: int
    rate: float


async def _soak(plan: Plan, services: Services) -> None:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, plan.hook).start()
    try:
        timeout = aiohttp.ClientTimeout(total=30)
        async with (
            aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=64)) as session,
            asyncpg.create_pool(plan.scratch, min_size=1, max_size=4) as pool,
        ):
            retention = await _retention(session, plan.api, plan.token)
            print(
                f"retention of finished messages: {RETENTION}"
                if retention is not None
                else "retention is not available (PUT /v1/admin/retention answered 404): nothing is pruned",
                flush=True,
            )
            sender = Sender(plan.api, plan.keys, pool, session)
            probe = sender.recipient()
            await sender.single(probe)  # end to end once before the clock starts: every process is up
            if not await _until(lambda: receiver.terminal.get(probe) in FINAL, 60, services):
                carried = (await _simulator_stats(session, plan.simulator))["received"]
                raise RuntimeError(
                    f"a first message did not reach a final status within 60 s (the carrier simulator has {carried}"
                    f" messages; {len(receiver.event_ids)} status callbacks came)"
                )
            sampler = Sampler(session, pool, sender, receiver, plan.simulator, plan.metrics_ports)
            await sampler.sample()  # the readings the first minute counts from
            print(HEADER, flush=True)
            sending = asyncio.create_task(sender.run(plan.rate, plan.minutes * 60.0))
            started = time.monotonic()
            minutes: list[Minute] = []
            for number in range(1, plan.minutes + 1):
                await asyncio.sleep(max(0.0, started + 60.0 * number - time.monotonic()))
                services.check()
                if sending.done():
                    sending.result()  # raises what stopped it
                minutes.append(await sampler.sample())
                print(_line(number, minutes[-1]), flush=True)
            await sending
            stopped = time.monotonic()
            accepted = sender.accepted

            def pending() -> int:
                return sum(1 for r in accepted if receiver.terminal.get(r) not in FINAL)

            drained = await _until(lambda: pending() == 0, VALIDITY_SECONDS + 120, services)
            waited = time.monotonic() - stopped
            print()
            for line in goals(minutes, retention):
                print(line)
            reached = Counter(receiver.terminal.get(r, "none") for r in accepted)
            lost = reached.pop("none", 0)
            print(f"lost (goal: none): {lost:,} of {len(accepted):,} accepted messages reached no terminal status")
            print(
                f"  reached: {', '.join(f'{status} {n:,}' for status, n in sorted(reached.items()))};"
                f" {'all final' if drained else 'not all final'} {waited:.0f} s after the sending stopped"
            )
            refused = ", ".join(f"{code} {n:,}" for code, n in sorted(sender.rejected.items())) or "none"
            duplicates = (await _simulator_stats(session, plan.simulator))["duplicate_keys"]
            print(
                f"  refused: {refused}; status callbacks that came twice: {receiver.duplicates:,}; messages the"
                f" carrier simulator took twice: {duplicates:,}"
            )
    finally:
        await runner.cleanup()


def _simulator_config(api_port: int, receipts_token: str) -> str:
    return (
        "seed = 7\nlatency_ms = [1, 5]\nfailure_rate = 0.002\npermanent_failure_rate = 0.001\n"
        "undelivered_rate = 0.02\nduplicate_receipt_rate = 0.01\nreceipt_delay_ms = [50, 200]\n"
        f'receipts_url = "http://127.0.0.1:{api_port}/v1/gateways/sim/receipts"\n'
        f'receipts_token = "{receipts_token}"\n'
    )


def main(dsn: str, minutes: int = 30, rate: float = 50.0) -> None:
    logs = Path(tempfile.mkdtemp(prefix="fairlane-soak-"))
    token, receipts_token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    hook = socket.create_server(("127.0.0.1", 0))
    api_port = free_port()
    simulator_port = free_port({api_port})
    metrics_port = free_port({api_port, simulator_port})
    while not port_is_free(metrics_port + 1) or metrics_port + 1 in (api_port, simulator_port):
        metrics_port = free_port({api_port, simulator_port})
    mix = ", ".join(f"{share:.0%} {way}" for way, share in MIX.items())
    print(
        f"soak: {rate:g} messages/s for {minutes} min ({mix}),"
        f" {VALIDITY_SECONDS} s validity, 2 dispatchers, two destinations at {2 * rate:g} segments/s each",
        flush=True,
    )
    services = Services(logs, {"FAIRLANE_ADMIN_TOKEN": token, "FAIRLANE_LOG_LEVEL": "WARNING"})
    stopped, keep = False, False
    try:
        scratch = services.env["DATABASE_URL"] = recreate(dsn, DATABASE)
        keys = _configure(
            scratch, rate, simulator_port, receipts_token, f"http://127.0.0.1:{hook.getsockname()[1]}/hook"
        )
        (logs / "simulator.toml").write_text(_simulator_config(api_port, receipts_token))
        simulator = ["simulator", "--port", str(simulator_port), "--config", str(logs / "simulator.toml")]
        services.start("simulator", simulator, ready="simulator listening")
        services.start("api", ["api", "--port", str(api_port)], ready="api listening")
        services.start("dispatch", ["dispatch", "--workers", "2", "--metrics-port", str(metrics_port)])
        _wait_for_metrics(services, (metrics_port, metrics_port + 1))
        services.start("callbacks", ["callbacks"])
        api, simulator_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{simulator_port}"
        ports = (metrics_port, metrics_port + 1)
        asyncio.run(_soak(Plan(scratch, api, simulator_url, ports, token, keys, hook, minutes, rate), services))
        statuses = services.stop()
        stopped = True
        print("logs:", *services.warnings(), sep="\n  ")
        failed = {name: status for name, status in statuses.items() if status != 0}
        if failed:
            keep = True
            print(f"exited with a failure: {failed}; the processes' logs are in {logs}")
    finally:
        hook.close()
        if not stopped:
            services.kill()
            keep = True
            print(f"the soak failed; the processes' logs are in {logs}", file=sys.stderr)
        drop(dsn, DATABASE)
    if not keep:
        shutil.rmtree(logs)
