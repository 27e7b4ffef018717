"""Helpers of the SMPP tests: the carrier simulator with its SMPP side, and an smpp gateway's configuration."""

import json
import urllib.request
from pathlib import Path

from tests.integration.fixtures import apply_config
from tests.integration.processes import Process, free_port

SYSTEM_ID, PASSWORD = "fairlane", "secret"


def _toml(config: dict) -> str:
    """TOML for the simulator's configuration (values, tables, and the [smpp] table with its accounts)."""
    lines = [f"{k} = {json.dumps(v)}" for k, v in config.items() if not isinstance(v, dict)]
    for name, limits in config.get("destinations", {}).items():
        lines.append(f'[destinations."{name}"]')
        lines += [f"{k} = {json.dumps(v)}" for k, v in limits.items()]
    smpp = {"accounts": {SYSTEM_ID: {"password": PASSWORD, "destination": "X"}}, **config.get("smpp", {})}
    lines.append("[smpp]")
    lines += [f"{k} = {json.dumps(v)}" for k, v in smpp.items() if not isinstance(v, dict)]
    for system_id, account in smpp["accounts"].items():
        lines.append(f'[smpp.accounts."{system_id}"]')
        lines += [f"{k} = {json.dumps(v)}" for k, v in account.items()]
    return "\n".join(lines) + "\n"


class SmppSimulator(Process):
    """`fairlane simulator --smpp-port`: the SMPP carrier (account fairlane/secret, its parts counted under
    destination X) with its HTTP side for /stats and /received."""

    def __init__(self, config: dict, tmp_path: Path):
        self.port, self.smpp_port = free_port(), free_port()
        path = tmp_path / f"smpp-simulator-{self.port}.toml"
        path.write_text(_toml(config))
        super().__init__(
            ["simulator", "--port", str(self.port), "--smpp-port", str(self.smpp_port), "--config", str(path)]
        )
        self.wait_for_line("simulator listening")
        self.url = f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/stats", timeout=10) as response:
            return json.loads(response.read())

    def received(self) -> list[dict]:
        with urllib.request.urlopen(f"{self.url}/received", timeout=30) as response:
            return json.loads(response.read())


def configure(
    conn,
    simulator: SmppSimulator,
    *,
    rate,
    burst,
    tenants=1,
    set_weights=None,
    binds=2,
    window=10,
    timeout_seconds=2,
    max_in_flight=100,
    concatenation="udh",
):
    """An smpp gateway to the simulator, destination X at `rate`/`burst` routed from +1 long codes, and
    tenants t0.. (sets s0.. weighted `set_weights`) with senders +15550000000..."""
    set_weights = set_weights or [1] * tenants
    apply_config(
        conn,
        {
            "tenant_sets": [{"name": f"s{i}", "weight": weight} for i, weight in enumerate(set_weights)],
            "gateways": [
                {
                    "name": "smsc",
                    "kind": "smpp",
                    "host": "127.0.0.1",
                    "port": simulator.smpp_port,
                    "system_id": SYSTEM_ID,
                    "password": PASSWORD,
                    "binds": binds,
                    "window": window,
                    "enquire_link_seconds": 1,
                    "concatenation": concatenation,
                    "message_id_tlv": 0x1410,  # the simulator's idempotency key: it counts parts received twice
                    "timeout_seconds": timeout_seconds,
                    "max_in_flight": max_in_flight,
                }
            ],
            "destinations": [
                {"code": "X", "gateway": "smsc", "rate": rate, "burst": burst, "max_drain_seconds": 36000}
            ],
            "tenants": [
                {
                    "name": f"t{i}",
                    "tenant_set": f"s{i}",
                    "senders": [{"address": f"+1555000000{i}", "type": "long_code"}],
                }
                for i in range(tenants)
            ],
            "routes": [{"prefix": "+1", "sender_type": "long_code", "destination": "X"}],
        },
    )


def statuses(conn) -> dict[str, int]:
    return dict(conn.execute("SELECT status, count(*) FROM fairlane.messages GROUP BY status").fetchall())


def sent(conn) -> int:
    """Messages the carrier accepted: sent, or delivered or undelivered since (the simulator sends receipts)."""
    found = statuses(conn)
    return found.get("sent", 0) + found.get("delivered", 0) + found.get("undelivered", 0)
