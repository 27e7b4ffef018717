"""`fairlane demo`: a scripted noisy-neighbour scenario through the real HTTP API.

Two destinations with the same quota are served side by side by the same dispatchers and carrier
simulator. On DEMO-FAIR the tenants `bulk` (a flood of batches at t = 0) and `otp-1..3` (steady passcodes
below their portions) each have their own fairlane tenant; on DEMO-FIFO every stream is sent as the one
tenant `fifo` with one sender: one queue, arrival order, fairness switched off. A live view shows progress
and per-tenant rates; at the end service/demo_report.py turns what the carrier received into report.md,
report.json and chart.png. By default the demo starts its own `fairlane run` in a temporary directory.

The live view reads only the simulator's `GET /stats` and `GET /v1/admin/queues` (cheap); `GET /received`
(the whole list, serialised in the simulator's event loop) is read once, at the end.
"""

import asyncio
import bisect
import contextlib
import datetime as dt
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from db import embedded
from tools.demo import levels
from tools.demo import report as demo_report
from tools.demo.report import Observation, Scenario, Sent

logger = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
DESTINATIONS = {"fair": "DEMO-FAIR", "fifo": "DEMO-FIFO"}
TENANTS = ("bulk", "otp-1", "otp-2", "otp-3")
SENDERS = {"bulk": "+15550101000", "otp-1": "+15550101001", "otp-2": "+15550101002", "otp-3": "+15550101003"}
FIFO_TENANT, FIFO_SENDER = "fifo", "+15550101009"
GATEWAY = "demo-carrier"
FLOOD_BODY = "Spring sale: 20% off everything this weekend only. Reply STOP to opt out."
# one batch request in flight per side: the API writes at most two submission calls at a time (group commit),
# so more would only queue there, and single passcode POSTs would wait behind them
BATCH, FLOOD_REQUESTS, VALIDITY, GRACE_SECONDS = 1000, 1, 36000, 5.0


@dataclass(frozen=True)
class DemoOptions:
    rate: int = 200
    burst: int = 20
    flood: int = 100_000
    otp_rate: float = 5.0
    seconds: float = 30.0
    out: Path = Path("fairlane-demo")
    workers: int = 2
    url: str | None = None
    admin_token: str | None = None
    simulator_url: str | None = None
    gateway: str = "http"
    """http: the simulator's HTTP protocol; smpp: its SMPP side, a gateway (account) per destination."""
    smpp_port: int | None = None
    """The running simulator's SMPP port (with --url and --gateway smpp)."""


@dataclass(frozen=True)
class Target:
    url: str
    admin_token: str
    simulator_url: str
    smpp_port: int | None = None


@dataclass
class Live:
    """What the traffic recorded so far, and what the live view remembers."""

    started: float
    """Wall-clock t = 0."""
    sent: list[Sent] = field(default_factory=list)
    created: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    """(side, logical tenant) -> created_at of each message sent, in the order the answers came."""
    rejected: Counter[str] = field(default_factory=Counter)
    portions: dict[str, dict[str, list[float]]] = field(default_factory=lambda: {"fair": {}, "fifo": {}})
    flood_seconds: dict[str, float] = field(default_factory=dict)
    left: deque[tuple[float, Counter[tuple[str, str]]]] = field(default_factory=lambda: deque(maxlen=4))

    def record(self, side: str, tenant: str, message: dict[str, Any], submit_seconds: float) -> None:
        created = dt.datetime.fromisoformat(message["created_at"]).timestamp()
        self.sent.append(Sent(side, tenant, message["id"], created, submit_seconds))
        self.created.setdefault((side, tenant), []).append(created)

    def count(self, side: str, tenant: str) -> int:
        return len(self.created.get((side, tenant), ()))


class LocalFairlane:
    """`fairlane run` as a child process in a temporary directory, with its own embedded PostgreSQL."""

    def __init__(self, workers: int, gateway: str = "http") -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="fairlane-demo-"))
        with socket.socket() as api, socket.socket() as simulator, socket.socket() as smpp:  # distinct free ports
            api.bind(("127.0.0.1", 0))
            simulator.bind(("127.0.0.1", 0))
            smpp.bind(("127.0.0.1", 0))
            api_port, simulator_port = api.getsockname()[1], simulator.getsockname()[1]
            smpp_port = smpp.getsockname()[1] if gateway == "smpp" else None
        token = secrets.token_urlsafe(24)
        self.target = Target(f"http://127.0.0.1:{api_port}", token, f"http://127.0.0.1:{simulator_port}", smpp_port)
        config = self.directory / "demo.toml"
        text = (
            f'[[gateways]]\nname = "{GATEWAY}"\nkind = "simulator"\n'
            f'url = "{self.target.simulator_url}/messages"\ntimeout_seconds = 5\nmax_in_flight = 200\n'
        )
        for side, code in DESTINATIONS.items() if smpp_port is not None else ():
            # `fairlane run` gives the simulator it starts an SMPP side for these (the HTTP one for the clock)
            text += "\n" + _toml_table("gateways", _smpp_gateway(side, code, "127.0.0.1", smpp_port))
        config.write_text(text)
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "FAIRLANE_DATA_DIR")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), env.get("PYTHONPATH"))))
        env["FAIRLANE_ADMIN_TOKEN"] = token
        self.log_path = self.directory / "fairlane.log"
        command = ["run", "--port", str(api_port), "--workers", str(workers), "--config", str(config)]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service.cli", *command],
                cwd=self.directory,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the demo, which stops it in order
            )
        logger.info("demo fairlane started", extra={"directory": str(self.directory), "url": self.target.url})

    def check(self) -> bool:
        """True while `fairlane run` is running; raises with the end of its log once it has exited."""
        if self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"fairlane run exited with {self.process.returncode}:\n{tail}")
        return True

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        embedded.stop(self.directory / ".fairlane" / "pgdata")  # a no-op when `fairlane run` stopped it
        shutil.rmtree(self.directory, ignore_errors=True)
        logger.info("demo fairlane stopped", extra={"code": self.process.returncode})


class Client:
    def __init__(self, http: aiohttp.ClientSession, target: Target) -> None:
        self.http, self.target = http, target

    async def call(self, method: str, path: str, token: str | None = None, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token or self.target.admin_token}"}
        async with self.http.request(method, self.target.url + path, json=body, headers=headers) as response:
            return response.status, await response.json(content_type=None)

    async def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        status, answer = await self.call(method, path, body=body)
        if status >= 300:
            raise RuntimeError(f"{method} {path}: HTTP {status}: {answer}")
        return dict(answer)

    async def queues(self, side: str) -> dict[str, dict[str, Any]]:
        answer = await self.admin("GET", f"/v1/admin/queues?destination={DESTINATIONS[side]}")
        return {row["tenant"]: row for row in answer["queues"]}

    async def simulator(self, path: str) -> Any:
        async with self.http.get(self.target.simulator_url + path) as response:
            return await response.json(content_type=None)


async def _ready(client: Client, local: LocalFairlane | None, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    for url in (client.target.url + "/readyz", client.target.simulator_url + "/stats"):
        while local is None or local.check():
            with contextlib.suppress(aiohttp.ClientError):
                async with client.http.get(url) as response:
                    if response.status == 200:
                        break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")
            await asyncio.sleep(0.2)


def _smpp_gateway(side: str, code: str, host: str, port: int) -> dict[str, Any]:
    """The smpp gateway of one side: its own account at the simulator, named like its destination (the
    simulator counts what an account sends under the account's name)."""
    settings = {"kind": "smpp", "host": host, "port": port, "system_id": code, "password": "demo", "binds": 2}
    settings["message_id_tlv"] = 0x1410  # the simulator counts a part received twice by it
    return {"name": f"{GATEWAY}-smpp-{side}", **settings, "window": 50, "timeout_seconds": 5, "max_in_flight": 200}


def _toml_table(name: str, values: dict[str, Any]) -> str:
    return f"[[{name}]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())


async def _configure(client: Client, options: DemoOptions) -> dict[str, str]:
    """Create the scenario through the admin API; return each tenant's new API key."""
    url = f"{client.target.simulator_url}/messages"
    await client.admin("PUT", f"/v1/admin/gateways/{GATEWAY}", {"kind": "simulator", "url": url, "max_in_flight": 200})
    gateways = dict.fromkeys(DESTINATIONS, GATEWAY)
    if options.gateway == "smpp":
        host = urlsplit(client.target.simulator_url).hostname or "127.0.0.1"
        for side, code in DESTINATIONS.items():
            assert client.target.smpp_port is not None
            gateway = _smpp_gateway(side, code, host, client.target.smpp_port)
            await client.admin("PUT", f"/v1/admin/gateways/{gateway.pop('name')}", gateway)
            gateways[side] = f"{GATEWAY}-smpp-{side}"
    for side, code in DESTINATIONS.items():
        quota = {"gateway": gateways[side], "rate": options.rate, "burst": options.burst, "max_drain_seconds": 36000}
        await client.admin("PUT", f"/v1/admin/destinations/{code}", quota)
    await levels.configure(client, GATEWAY, options.rate, options.burst, options.seconds)
    keys = {}
    for tenant, sender in {**SENDERS, FIFO_TENANT: FIFO_SENDER, levels.TENANT: levels.SENDER}.items():
        tenant_set = "demo-fifo" if tenant == FIFO_TENANT else "demo"
        await client.admin("PUT", f"/v1/admin/tenant-sets/{tenant_set}", {"weight": 1})
        created = await client.admin("PUT", f"/v1/admin/tenants/{tenant}", {"tenant_set": tenant_set})
        if "api_key" not in created:  # an earlier run created it: a new key (older ones keep working)
            created = await client.admin("POST", f"/v1/admin/tenants/{tenant}/keys")
        keys[tenant] = created["api_key"]
        await client.admin("PUT", f"/v1/admin/tenants/{tenant}/senders/{sender}", {"type": "long_code"})
    return keys


def _message(side: str, tenant: str, index: int, body: str) -> dict[str, Any]:
    sender = FIFO_SENDER if side == "fifo" else SENDERS[tenant]
    to = f"+1555{index % 10_000_000:07d}"
    return {"to": to, "from": sender, "body": body, "destination": DESTINATIONS[side], "validity_seconds": VALIDITY}


async def _warm_up(client: Client, keys: dict[str, str]) -> float:
    """A message per side through the whole path (dispatchers notice new destinations within seconds; a side
    still draining an earlier run's backlog is being served already), then probes that fix the simulator's
    clock against ours; return the offset (simulator `at` + offset = wall-clock seconds)."""
    pending = {}
    for side, tenant in (("fair", "otp-1"), ("fifo", FIFO_TENANT)):
        backlog = sum(int(row["depth"]) for row in (await client.queues(side)).values())
        if backlog:
            print(f"note: {DESTINATIONS[side]} still holds {backlog:,} messages of an earlier run", flush=True)
        if side == "fair" or not backlog:
            status, answer = await client.call("POST", "/v1/messages", keys[tenant], _message(side, tenant, 0, "hi"))
            if status != 202:
                raise RuntimeError(f"warm-up message refused: HTTP {status}: {answer}")
            pending[answer["id"]] = keys[tenant]
    deadline = time.monotonic() + 60
    while pending:
        for message_id, key in list(pending.items()):
            _, message = await client.call("GET", f"/v1/messages/{message_id}", key)
            if message.get("status") in ("sent", "delivered", "undelivered"):
                del pending[message_id]
        if pending and time.monotonic() > deadline:
            raise RuntimeError("the warm-up messages did not reach the carrier simulator within 60 s")
        await asyncio.sleep(0.2)
    bounds = {}
    for index in range(5):
        probe = {"id": f"clock-probe-{secrets.token_hex(4)}-{index}", "destination": "DEMO-CLOCK", "segments": 1}
        before = time.time()
        async with client.http.post(client.target.simulator_url + "/messages", json=probe) as response:
            await response.read()
        bounds[probe["id"]] = (before, time.time())
    at = {item["id"]: float(item["at"]) for item in await client.simulator("/received") if item["id"] in bounds}
    low = max(before - at[key] for key, (before, _) in bounds.items())
    high = min(after - at[key] for key, (_, after) in bounds.items())
    return (low + high) / 2


async def _flood(client: Client, side: str, key: str, options: DemoOptions, live: Live, started: float) -> None:
    chunks = iter(range(0, options.flood, BATCH))

    async def worker() -> None:
        for first in chunks:
            count = min(BATCH, options.flood - first)
            batch = {"messages": [_message(side, "bulk", first + i, FLOOD_BODY) for i in range(count)]}
            while True:
                posted = time.monotonic()
                status, answer = await client.call("POST", "/v1/messages/batch", key, batch)
                if status not in (429, 503):
                    break
                await asyncio.sleep(1.0)
            if status != 200:
                live.rejected[f"HTTP {status}"] += count
                logger.warning("demo batch refused", extra={"side": side, "status": status})
                continue
            took = time.monotonic() - posted
            for result in answer["results"]:
                if "message" in result:
                    live.record(side, "bulk", result["message"], took)
                else:
                    live.rejected[result["error"]["code"]] += 1

    await asyncio.gather(*(worker() for _ in range(FLOOD_REQUESTS)))
    live.flood_seconds[side] = round(time.monotonic() - started, 2)


async def _passcode(client: Client, side: str, tenant: str, index: int, key: str, live: Live) -> None:
    message = _message(side, tenant, index, f"Your {tenant} passcode is {secrets.randbelow(10**6):06d}")
    posted = time.monotonic()
    try:
        status, answer = await client.call("POST", "/v1/messages", key, message)
    except (aiohttp.ClientError, TimeoutError) as error:
        live.rejected[type(error).__name__] += 1
        return
    if status == 202:
        live.record(side, tenant, answer, time.monotonic() - posted)
    else:
        live.rejected[answer.get("error", {}).get("code", f"HTTP {status}")] += 1


async def _passcodes(client: Client, keys: dict[str, str], options: DemoOptions, live: Live, started: float) -> None:
    """Each passcode stream sends `otp_rate` messages per second, the same message on both sides at once."""
    tasks = []
    streams = TENANTS[1:]
    for index in range(int(options.seconds * options.otp_rate)):
        for number, tenant in enumerate(streams):
            due = started + (index + number / len(streams)) / options.otp_rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            for side, key in (("fair", keys[tenant]), ("fifo", keys[FIFO_TENANT])):
                tasks.append(asyncio.create_task(_passcode(client, side, tenant, index, key, live)))
    await asyncio.gather(*tasks)


def _bar(done: int, total: int, width: int = 24) -> str:
    filled = min(width, round(width * done / total)) if total else 0
    return "[" + "#" * filled + "." * (width - filled) + f"] {done:>7,}/{total:,}"


def _left_queues(live: Live, queues: dict[str, dict[str, dict[str, Any]]]) -> Counter[tuple[str, str]]:
    """Messages of each side and logical tenant that have left their queue. Fair side: sent - depth. FIFO
    side (one queue, arrival order): all sent - the queue's depth; of it, the passcodes created before the
    queue's head (now - its oldest age), the flood the rest (a batch's messages share one created_at)."""
    fifo = queues["fifo"].get(FIFO_TENANT, {})
    cut = time.time() - float(fifo["oldest_age_seconds"]) if fifo.get("oldest_age_seconds") is not None else 1e18
    left: Counter[tuple[str, str]] = Counter()
    for tenant in TENANTS:
        left["fair", tenant] = live.count("fair", tenant) - int(queues["fair"].get(tenant, {}).get("depth", 0))
        if tenant != TENANTS[0]:
            left["fifo", tenant] = bisect.bisect_left(sorted(live.created.get(("fifo", tenant), [])), cut)
    fifo_left = sum(live.count("fifo", tenant) for tenant in TENANTS) - int(fifo.get("depth", 0))
    left["fifo", TENANTS[0]] = max(0, fifo_left - sum(left["fifo", tenant] for tenant in TENANTS[1:]))
    return left


async def _frame(client: Client, options: DemoOptions, live: Live, started: float, offset: float) -> list[str]:
    """The live view's lines; the last is the one-line summary printed when stdout is not a terminal."""
    stats = await client.simulator("/stats")
    queues = {side: await client.queues(side) for side in DESTINATIONS}
    for side, rows in queues.items():
        for tenant, row in rows.items():
            if row["portion"] is not None:  # None: joined since the portions were last computed
                live.portions[side].setdefault(tenant, []).append(float(row["portion"]))
    now = time.monotonic()
    sent = Counter({(side, tenant): live.count(side, tenant) for side in DESTINATIONS for tenant in TENANTS})
    live.left.append((now, _left_queues(live, queues)))
    (then, before), (_, left) = live.left[0], live.left[-1]
    sim_now, sim_start = time.time() - offset, live.started - offset
    lines = [f"fairlane demo  t = {now - started:5.1f} s of {options.seconds:g} s   quota {options.rate}/s each"]
    summary = [f"t={now - started:3.0f}s"]
    for side, code in DESTINATIONS.items():
        seconds = stats["per_second"].get(code, {})
        rate = seconds.get(str(int(sim_now) - 1), 0)
        carrier = sum(n for s, n in seconds.items() if int(s) >= int(sim_start))
        lines.append(f"{side:>4}  flood accepted {_bar(sent[side, 'bulk'], options.flood)}")
        lines.append(f"{'':>4}  at the carrier {_bar(carrier, sum(sent[side, t] for t in TENANTS))}  {rate}/s")
        passcodes = [sum(counter[side, t] for t in TENANTS[1:]) for counter in (left, sent)]
        summary.append(
            f"{side}: flood accepted {sent[side, 'bulk']}, carrier {rate}/s, "
            f"passcodes out of the queue {passcodes[0]}/{passcodes[1]}"
        )
    lines.append("tenant  " + "".join(f"| {side:<4} out/s  portion     depth " for side in DESTINATIONS))
    for tenant in TENANTS:
        cells = []
        for side in DESTINATIONS:
            row = queues[side].get(tenant if side == "fair" else FIFO_TENANT, {})
            rate = (left[side, tenant] - before[side, tenant]) / max(now - then, 1e-9)
            portion = "-" if row.get("portion") is None else f"{row['portion']:g}"
            cells.append(f"| {rate:10.1f}  {portion:>7}  {sent[side, tenant] - left[side, tenant]:>8,} ")
        lines.append(f"{tenant:<8}" + "".join(cells))
    return lines + [" | ".join(summary)]


async def _show(client: Client, options: DemoOptions, live: Live, offset: float, started: float) -> None:
    """Redraw the view every second on a terminal (plain ANSI), else print one summary line per second."""
    tty, shown, tick = sys.stdout.isatty(), 0, 1
    while True:
        await asyncio.sleep(max(0.0, started + tick - time.monotonic()))
        tick = max(tick + 1, int(time.monotonic() - started) + 1)
        try:
            lines = await _frame(client, options, live, started, offset)
        except Exception:  # the view only shows; the measurement does not depend on it
            logger.exception("demo view failed")
            continue
        if tty:
            print((f"\x1b[{shown}F\x1b[J" if shown else "") + "\n".join(lines[:-1]), flush=True)
            shown = len(lines) - 1
        else:
            print(lines[-1], flush=True)


async def _scenario(client: Client, options: DemoOptions, local: LocalFairlane | None) -> Observation:
    await _ready(client, local)
    keys = await _configure(client, options)
    offset = await _warm_up(client, keys)
    started, live = time.monotonic(), Live(time.time())
    view = asyncio.create_task(_show(client, options, live, offset, started))
    floods = [
        asyncio.create_task(_flood(client, side, keys[tenant], options, live, started))
        for side, tenant in (("fair", "bulk"), ("fifo", FIFO_TENANT))
    ]
    # the third destination: levels of service beside the flood, and a daily cap that runs out halfway
    floods.append(asyncio.create_task(levels.traffic(
        client, keys, SENDERS["bulk"], options.rate, options.seconds, options.otp_rate, live
    )))  # fmt: skip
    await _passcodes(client, keys, options, live, started)
    # a short grace for passcodes still in flight on the fair side (the FIFO ones wait behind the flood)
    deadline = time.monotonic() + GRACE_SECONDS
    while time.monotonic() < deadline and set(TENANTS[1:]) & set(await client.queues("fair")):
        await asyncio.sleep(0.2)
    await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))  # sends claimed a moment ago
    if not all(task.done() for task in floods):
        logger.warning("demo flood still submitting at the end")
    view.cancel()
    for task in floods:
        task.cancel()
    await asyncio.gather(view, *floods, return_exceptions=True)
    ended = time.time()
    received, stats = await client.simulator("/received"), await client.simulator("/stats")
    kind = f"started by the demo (`fairlane run`, embedded PostgreSQL, {options.workers} dispatchers)"
    kind += ", over SMPP" if options.gateway == "smpp" else ""
    scenario = Scenario(
        options.rate, options.burst, options.flood, options.otp_rate, options.seconds, TENANTS, DESTINATIONS,
        kind if local else client.target.url, BATCH, FLOOD_REQUESTS, levels.daily_cap(options.rate, options.seconds),
    )  # fmt: skip
    return Observation(
        scenario, live.started, ended, offset, live.sent, received, stats["per_second"], live.portions,
        dict(live.rejected), live.flood_seconds, {side: live.count(side, "bulk") for side in DESTINATIONS},
    )  # fmt: skip


async def _main(options: DemoOptions, local: LocalFairlane | None, target: Target) -> Observation:
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=64)) as http:
        return await _scenario(Client(http, target), options, local)


def run(options: DemoOptions) -> int:
    local = None
    if options.url is None:
        print("starting fairlane in a temporary directory (embedded PostgreSQL) ...", flush=True)
        local = LocalFairlane(options.workers, options.gateway)
        target = local.target
    else:
        assert options.admin_token is not None and options.simulator_url is not None
        target = Target(
            options.url.rstrip("/"), options.admin_token, options.simulator_url.rstrip("/"), options.smpp_port
        )
    try:
        observation = asyncio.run(_main(options, local, target))
    except RuntimeError as error:  # fairlane did not start, refused the setup, or the path did not work
        print(f"fairlane: demo: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fairlane: demo: interrupted", file=sys.stderr)
        return 130
    finally:
        if local is not None:
            print("stopping the demo's fairlane ...", flush=True)
            local.stop()
    figures, report, picture = demo_report.write(observation, options.out)
    print("\n" + "\n".join(demo_report.tenant_table(figures)) + "\n\n" + figures["verdict"] + "\n")
    print(f"report: {report}\nchart:  {picture}")
    return 0
