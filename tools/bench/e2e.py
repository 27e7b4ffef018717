"""End to end through the carrier simulator over HTTP with real dispatcher processes:

1. throughput: 20k messages from 1,000 tenants, no quota, 2 dispatchers; messages/s at the simulator;
2. noisy neighbour: a destination at 200 segments/s shared by two equal tenants; `light` sends 20
   messages/s (a fifth of its portion) for 10 s while `flood` has 20k queued, then the same light traffic
   alone; p50/p99 queue wait (acceptance to claim) of light's messages in both cases.

Run: `fairlane bench e2e`. With `--gateway smpp` the throughput runs twice, over HTTP and then over SMPP
(an smpp gateway with 4 binds of window 50 to the simulator's SMPP side), printed side by side, and the
noisy neighbour runs over SMPP.
"""

import json
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg

from db import configuration, queries
from service.model.configuration import parse_configuration
from tools.bench.processes import Services, free_port
from tools.bench.scratch import drop, recreate

DATABASE = "fairlane_bench_e2e"


def _simulator_received(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as response:
        return int(json.loads(response.read())["received"])


def _configure(scratch: str, port: int, rate: float, burst: int, tenants: list[str], smpp_port: int | None) -> None:
    gateway: dict[str, object] = {"name": "sim", "kind": "simulator", "url": f"http://127.0.0.1:{port}/messages"}
    if smpp_port is not None:
        gateway = {"name": "sim", "kind": "smpp", "host": "127.0.0.1", "port": smpp_port, "system_id": "X"}
        gateway.update(password="bench", binds=4, window=50, message_id_tlv=0x1410)  # the simulator's key
    config = {
        "tenant_sets": [{"name": "s"}],
        "gateways": [gateway],
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
    dsn: str, logs: Path, simulator_config: str, rate: float, burst: int, tenants: list[str], gateway: str
) -> tuple[str, int, Services]:
    """A scratch database configured for one destination X through `gateway` (http: the simulator's HTTP
    protocol; smpp: its SMPP side, whose parts count under X), the simulator with `simulator_config`, and
    two dispatcher processes; returns (scratch DSN, simulator port, the processes)."""
    scratch = recreate(dsn, DATABASE)
    port = free_port()
    smpp_port = free_port({port}) if gateway == "smpp" else None
    config = logs / "sim.toml"
    config.write_text(simulator_config)
    command = ["simulator", "--port", str(port), "--config", str(config)]
    if smpp_port is not None:
        command += ["--smpp-port", str(smpp_port)]
    services = Services(logs, {"DATABASE_URL": scratch, "FAIRLANE_LOG_LEVEL": "INFO"})
    try:
        services.start("simulator", command, ready="simulator listening")
        _configure(scratch, port, rate, burst, tenants, smpp_port)
        for i in range(2):
            services.start(f"dispatcher-{i + 1}", ["dispatch", "--workers", "1"], ready="dispatcher started")
    except BaseException:
        services.kill()
        raise
    return scratch, port, services


def _throughput(dsn: str, config_dir: Path, gateway: str = "http") -> float:
    tenants = [f"t{i}" for i in range(1000)]
    simulator_config = "latency_ms = [1, 3]\n[smpp]\nreceipts = false\n"  # no receipts over HTTP either
    scratch, port, services = _scenario(dsn, config_dir, simulator_config, 1e9, 2_000_000_000, tenants, gateway)
    try:
        started = time.monotonic()
        with psycopg.connect(scratch, autocommit=True) as connection:
            connection.execute(queries.load("bench")["spread"], {"rows": 20000})
        while _simulator_received(port) < 20000 and time.monotonic() - started < 120:
            time.sleep(0.2)
        elapsed = time.monotonic() - started
        received = _simulator_received(port)
    finally:
        services.stop()
    print(
        f"end to end ({gateway}): {received:,} messages through 2 dispatchers and the simulator in {elapsed:.1f} s: "
        f"{received / elapsed:,.0f} messages/s",
        flush=True,
    )
    return received / elapsed


def _light_waits(dsn: str, config_dir: Path, flood: bool, gateway: str = "http") -> tuple[int, float, float]:
    q = queries.load("bench")
    simulator_config = 'latency_ms = [1, 3]\n[destinations."X"]\nrate = 200\nburst = 20\n'
    scratch, port, services = _scenario(dsn, config_dir, simulator_config, 200, 20, ["flood", "light"], gateway)
    try:
        with psycopg.connect(scratch, autocommit=True) as connection:
            if flood:
                connection.execute(q["flood"], {"rows": 20000})
            for _ in range(200):  # 20 messages/s for 10 s
                connection.execute(q["submit_light"])
                time.sleep(0.05)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                row = connection.execute(q["light_waits"]).fetchone()
                assert row is not None
                messages, p50, p99 = row
                if messages == 200:
                    break
                time.sleep(0.1)
    finally:
        services.stop()
    return messages, p50, p99


def main(dsn: str, gateway: str = "http") -> None:
    with tempfile.TemporaryDirectory() as directory:
        try:
            http = _throughput(dsn, Path(directory))
            if gateway == "smpp":
                smpp = _throughput(dsn, Path(directory), "smpp")
                print(f"SMPP / HTTP throughput: {smpp / http:.2f}", flush=True)
            alone = _light_waits(dsn, Path(directory), flood=False, gateway=gateway)
            flooded = _light_waits(dsn, Path(directory), flood=True, gateway=gateway)
        finally:
            drop(dsn, DATABASE)
    print(f"noisy neighbour ({gateway}): destination at 200 segments/s, light sends 20/s (its portion is 100/s)")
    for label, (messages, p50, p99) in (("light alone", alone), ("light beside a 20k flood", flooded)):
        print(f"  {label + ':':<26} p50 {p50 * 1000:7.1f} ms   p99 {p99 * 1000:7.1f} ms   ({messages} messages)")
