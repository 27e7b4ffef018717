"""End to end through the carrier simulator over HTTP with real dispatcher processes:

1. throughput: 20k messages from 1,000 tenants, no quota, 2 dispatchers; messages/s at the simulator;
2. noisy neighbour: a destination at 200 segments/s shared by two equal tenants; `light` sends 20
   messages/s (a fifth of its portion) for 10 s while `flood` has 20k queued, then the same light traffic
   alone; p50/p99 queue wait (acceptance to claim) of light's messages in both cases.

Run: `fairlane bench e2e`.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg

from db import configuration, queries
from service.model.configuration import parse_configuration
from tools.bench.scratch import drop, recreate

DATABASE = "fairlane_bench_e2e"
ROOT = Path(__file__).resolve().parent.parent


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(args: list[str], env: dict[str, str], ready: str, log: Path) -> subprocess.Popen[bytes]:
    """Start a fairlane subcommand logging to `log`; return once the log has the `ready` line."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", *args],
            cwd=ROOT,
            env={**os.environ, **env, "FAIRLANE_LOG_LEVEL": "INFO"},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while ready not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{args[0]} did not start: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.05)
    return process


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=30)


def _simulator_received(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as response:
        return int(json.loads(response.read())["received"])


def _configure(scratch: str, port: int, rate: float, burst: int, tenants: list[str]) -> None:
    config = {
        "tenant_sets": [{"name": "s"}],
        "gateways": [{"name": "sim", "kind": "simulator", "url": f"http://127.0.0.1:{port}/messages"}],
        "destinations": [{"code": "X", "gateway": "sim", "rate": rate, "burst": burst, "max_drain_seconds": 100000}],
        "tenants": [
            {"name": name, "tenant_set": "s", "senders": [{"address": f"+1555{index:07d}", "type": "long_code"}]}
            for index, name in enumerate(tenants)
        ],
        "routes": [{"prefix": "+1", "sender_type": "long_code", "destination": "X"}],
    }
    with psycopg.connect(scratch) as connection:
        configuration.apply(connection, parse_configuration(config).model_dump())


def _scenario(
    dsn: str, config_dir: Path, simulator_config: str, rate: float, burst: int, tenants: list[str]
) -> tuple[str, int, list[subprocess.Popen[bytes]]]:
    """A scratch database configured for one destination X, the simulator with `simulator_config`, and
    two dispatcher processes; returns (scratch DSN, simulator port, processes)."""
    scratch = recreate(dsn, DATABASE)
    port = _port()
    config = config_dir / "sim.toml"
    config.write_text(simulator_config)
    simulator = _start(
        ["simulator", "--port", str(port), "--config", str(config)], {}, "simulator listening", config_dir / "sim.log"
    )
    _configure(scratch, port, rate, burst, tenants)
    dispatchers = [
        _start(
            ["dispatch", "--workers", "1"], {"DATABASE_URL": scratch}, "dispatcher started", config_dir / f"d{i}.log"
        )
        for i in range(2)
    ]
    return scratch, port, [*dispatchers, simulator]


def _throughput(dsn: str, config_dir: Path) -> None:
    tenants = [f"t{i}" for i in range(1000)]
    scratch, port, processes = _scenario(dsn, config_dir, "latency_ms = [1, 3]\n", 1e9, 2_000_000_000, tenants)
    started = time.monotonic()
    with psycopg.connect(scratch, autocommit=True) as connection:
        connection.execute(queries.load("bench")["spread"], {"rows": 20000})
    while _simulator_received(port) < 20000 and time.monotonic() - started < 120:
        time.sleep(0.2)
    elapsed = time.monotonic() - started
    received = _simulator_received(port)
    _stop(processes)
    print(
        f"end to end: {received:,} messages through 2 dispatchers and the simulator in {elapsed:.1f} s: "
        f"{received / elapsed:,.0f} messages/s"
    )


def _light_waits(dsn: str, config_dir: Path, flood: bool) -> tuple[int, float, float]:
    q = queries.load("bench")
    simulator_config = 'latency_ms = [1, 3]\n[destinations."X"]\nrate = 200\nburst = 20\n'
    scratch, port, processes = _scenario(dsn, config_dir, simulator_config, 200, 20, ["flood", "light"])
    with psycopg.connect(scratch, autocommit=True) as connection:
        if flood:
            connection.execute(q["flood"], {"rows": 20000})
        for _ in range(200):  # 20 messages/s for 10 s
            connection.execute(q["submit_light"])
            time.sleep(0.05)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            messages, p50, p99 = connection.execute(q["light_waits"]).fetchone()
            if messages == 200:
                break
            time.sleep(0.1)
    _stop(processes)
    return messages, p50, p99


def main(dsn: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        try:
            _throughput(dsn, Path(directory))
            alone = _light_waits(dsn, Path(directory), flood=False)
            flooded = _light_waits(dsn, Path(directory), flood=True)
        finally:
            drop(dsn, DATABASE)
    print("noisy neighbour: destination at 200 segments/s, light sends 20/s (its portion is 100/s)")
    for label, (messages, p50, p99) in (("light alone", alone), ("light beside a 20k flood", flooded)):
        print(f"  {label + ':':<26} p50 {p50 * 1000:7.1f} ms   p99 {p99 * 1000:7.1f} ms   ({messages} messages)")
