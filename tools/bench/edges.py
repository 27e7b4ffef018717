"""The noisy neighbour at the edges (issue 13, docs/decisions/0017): tenant B's single POSTs and status
callbacks, alone and beside tenant A, who keeps twenty 1,000-message batches in flight and points its
callbacks at an endpoint that accepts connections and never answers.

Runs the API and the callback sender as processes of their own against a scratch database (no dispatcher:
what matters is the intake and the callbacks of each message's first status), tenant A's load from a separate
process; B sends single POSTs at a fixed rate from this process, where a receiver on loopback notes when each
of B's callbacks arrives. Prints B's POST latency (p50 / p99) alone and beside A and their ratio (goal: p99
within 2x), B's callback lag (from its POST to its callback's arrival), and what A got: batches accepted and
refused (429), and the most connections its dead endpoint held at once (the sender's per-tenant limit).

Run: `fairlane bench edges [--seconds S]` (default 5 s per phase; about 30 s in all).
"""

import asyncio
import json
import multiprocessing
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from db import configuration
from service.model.configuration import parse_configuration
from tools.bench.processes import Services, free_port
from tools.bench.scratch import drop, recreate

DATABASE = "fairlane_bench_edges"
B_RATE = 40.0  # B's single POSTs per second
A_WORKERS = 20  # A's batches in flight
BATCH = 1000


@dataclass(frozen=True)
class Flood:
    url: str
    key: str
    start_at: float
    seconds: float


def _batch(n: int) -> bytes:
    messages = [{"to": f"+1666{(n * BATCH + i) % 10_000_000:07d}", "body": "Big sale today only"} for i in range(BATCH)]
    return json.dumps({"messages": messages}).encode()


async def _flood(flood: Flood) -> dict[str, Any]:
    import aiohttp

    payloads = [_batch(n) for n in range(8)]
    headers = {"Authorization": f"Bearer {flood.key}", "Content-Type": "application/json"}
    statuses: dict[str, int] = {}
    end = flood.start_at + flood.seconds

    async def worker(index: int) -> None:
        n = index
        while time.time() < end:
            try:
                async with session.post(flood.url, data=payloads[n % len(payloads)], headers=headers) as response:
                    await response.read()
                    key = str(response.status)
            except (aiohttp.ClientError, OSError) as error:
                key = type(error).__name__
            statuses[key] = statuses.get(key, 0) + 1
            if key == "429":
                await asyncio.sleep(0.2)  # as a client honouring Retry-After roughly would
            n += A_WORKERS

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=A_WORKERS)) as session:
        await asyncio.sleep(max(0.0, flood.start_at - time.time()))
        await asyncio.gather(*(worker(i) for i in range(A_WORKERS)))
    return statuses


def _flood_process(flood: Flood, results: Any) -> None:
    results.put(asyncio.run(_flood(flood)))


class Dead:
    """An endpoint that accepts connections and never answers."""

    def __init__(self) -> None:
        self.open = 0
        self.most = 0
        self.connections = 0

    async def connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.connections += 1
        self.most = max(self.most, self.open)
        try:
            await reader.read()
        except (asyncio.CancelledError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()


def _configure(scratch: str, dead_url: str, live_url: str) -> dict[str, str]:
    config = {
        "callbacks": {"allow_networks": ["127.0.0.0/8"], "allow_http": True},
        "tenant_sets": [{"name": "bench"}],
        "gateways": [{"name": "null", "kind": "http", "url": "http://127.0.0.1:9/"}],
        # admission never refuses: 10^7 s at 10^6 segments/s
        "destinations": [{"code": "BENCH", "gateway": "null", "rate": 1_000_000, "max_drain_seconds": 10_000_000}],
        "tenants": [
            {
                "name": "a-bulk",
                "tenant_set": "bench",
                "status_callback": dead_url,
                "senders": [{"address": "+15550000001", "type": "long_code"}],
            },
            {
                "name": "b-otp",
                "tenant_set": "bench",
                "status_callback": live_url,
                "senders": [{"address": "+15550000002", "type": "long_code"}],
            },
        ],
        "routes": [{"prefix": "+1", "sender_type": "long_code", "destination": "BENCH"}],
    }
    with psycopg.connect(scratch) as connection:
        return dict(configuration.apply(connection, parse_configuration(config).model_dump()).api_keys)


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


async def _tenant_b(api_url: str, key: str, seconds: float, arrived: dict[str, float]) -> dict[str, Any]:
    """B's single POSTs at B_RATE for `seconds`: latencies, failures, and the callback lag of each message."""
    import aiohttp

    latencies: list[float] = []
    accepted: dict[str, float] = {}
    failures: dict[str, int] = {}
    headers = {"Authorization": f"Bearer {key}"}

    async def one(session: aiohttp.ClientSession, n: int) -> None:
        body = {"to": f"+1777{n:07d}", "body": f"Your code is {n % 1_000_000:06d}"}
        sent, posted = time.perf_counter(), time.monotonic()
        try:
            async with session.post(f"{api_url}/v1/messages", json=body, headers=headers) as response:
                answer = await response.json()
                status = response.status
        except (aiohttp.ClientError, OSError) as error:
            failures[type(error).__name__] = failures.get(type(error).__name__, 0) + 1
            return
        if status != 202:
            failures[str(status)] = failures.get(str(status), 0) + 1
            return
        latencies.append(time.perf_counter() - sent)
        accepted[answer["id"]] = posted

    async with aiohttp.ClientSession() as session:
        tasks = []
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < seconds:
            tasks.append(asyncio.create_task(one(session, n)))
            n += 1
            await asyncio.sleep(max(0.0, started + n / B_RATE - time.monotonic()))
        await asyncio.gather(*tasks)
        deadline = time.monotonic() + 10  # callbacks still on their way
        while time.monotonic() < deadline and any(message not in arrived for message in accepted):
            await asyncio.sleep(0.05)
    lags = [arrived[message] - at for message, at in accepted.items() if message in arrived]
    return {
        "sent": n,
        "latencies": latencies,
        "failures": failures,
        "lags": lags,
        "missing": sum(1 for message in accepted if message not in arrived),
    }


async def _run(scratch: str, services: Services, seconds: float) -> None:
    from aiohttp import web

    dead = Dead()
    dead_server = await asyncio.start_server(dead.connected, "127.0.0.1", 0)
    arrived: dict[str, float] = {}

    async def live(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        arrived.setdefault(body["data"]["message_id"], time.monotonic())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", live)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    live_port = runner.addresses[0][1]
    dead_port = dead_server.sockets[0].getsockname()[1]
    keys = _configure(scratch, f"http://127.0.0.1:{dead_port}/hook", f"http://127.0.0.1:{live_port}/hook")
    api_port = free_port()
    services.env.update(
        {"DATABASE_URL": scratch, "FAIRLANE_ADMIN_TOKEN": secrets.token_urlsafe(24), "FAIRLANE_LOG_LEVEL": "INFO"}
    )
    await asyncio.to_thread(services.start, "api", ["api", "--port", str(api_port)], "api listening")
    await asyncio.to_thread(services.start, "callbacks", ["callbacks"], "callbacks started")
    api_url = f"http://127.0.0.1:{api_port}"
    print(
        f"edges benchmark: B sends {B_RATE:g} single POSTs/s for {seconds:g} s, alone, then beside A ({A_WORKERS} "
        f"batches of {BATCH} in flight, callbacks to an endpoint that never answers); API and callback sender as "
        "processes of their own, A's load from another process"
    )
    await _tenant_b(api_url, keys["b-otp"], 1.0, arrived)  # warm-up: connections, plans, caches
    alone = await _tenant_b(api_url, keys["b-otp"], seconds, arrived)

    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    start_at = time.time() + 1.5
    flood = Flood(f"{api_url}/v1/messages/batch", keys["a-bulk"], start_at, seconds + 2.0)
    generator = context.Process(target=_flood_process, args=(flood, results), daemon=True)
    generator.start()
    try:
        await asyncio.sleep(max(0.0, start_at + 1.0 - time.time()))  # A's batches are flowing
        beside = await _tenant_b(api_url, keys["b-otp"], seconds, arrived)
        a_statuses = await asyncio.to_thread(results.get, True, seconds + 60)
        generator.join(timeout=15)
    finally:
        if generator.is_alive():
            generator.terminate()
            generator.join()
    print()
    head = f"{'POSTs':>6} {'p50 ms':>7} {'p99 ms':>7} {'failed':>6} {'cb p50 ms':>9} {'cb p99 ms':>9} {'cb lost':>7}"
    print(f"{'B':<30} {head}")
    for label, phase in (("alone", alone), ("beside A", beside)):
        print(
            f"{label:<30} {phase['sent']:>6} {_ms(_quantile(phase['latencies'], 0.5)):>7}"
            f" {_ms(_quantile(phase['latencies'], 0.99)):>7} {sum(phase['failures'].values()):>6}"
            f" {_ms(_quantile(phase['lags'], 0.5)):>9} {_ms(_quantile(phase['lags'], 0.99)):>9} {phase['missing']:>7}"
        )
        if phase["failures"]:
            print(f"  !!! {label}: {phase['failures']}")
    p99_alone, p99_beside = _quantile(alone["latencies"], 0.99), _quantile(beside["latencies"], 0.99)
    if p99_alone and p99_beside:
        ratio = p99_beside / p99_alone
        verdict = "met" if ratio <= 2 else "NOT met"
        print(f"B's p99 beside A / alone: {ratio:.2f}x (goal <= 2x: {verdict})")
    cb99 = _quantile(beside["lags"], 0.99)
    print(f"B's callbacks beside A: p99 {_ms(cb99)} ms (goal < 2000 ms: {'met' if cb99 and cb99 < 2 else 'NOT met'})")
    accepted = a_statuses.get("200", 0)
    print(
        f"A: {accepted} batches accepted ({accepted * BATCH / (seconds + 2):,.0f} messages/s), "
        f"{a_statuses.get('429', 0)} answered 429 rate_limited, other: "
        f"{ {k: v for k, v in a_statuses.items() if k not in ('200', '429')} }; "
        f"its dead endpoint: {dead.connections} connections, at most {dead.most} at once"
    )
    await runner.cleanup()
    dead_server.close()


def main(dsn: str, seconds: float = 5.0) -> None:
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as directory:
        services = Services(Path(directory), {})
        try:
            asyncio.run(_run(recreate(dsn, DATABASE), services, seconds))
        except KeyboardInterrupt:
            print("\ninterrupted; stopping the servers and dropping the scratch database", flush=True)
            raise SystemExit(130) from None
        finally:
            services.stop()
            drop(dsn, DATABASE)
    print(f"({time.monotonic() - started:.0f} s in all)")
