"""A per-minute quota beside the per-second rate, held by real dispatcher processes (docs/decisions/0020): four
dispatchers, the carrier simulator on loopback, three minutes; counted where it matters, at the carrier."""

import collections
import time

import pytest

from tests.integration.claiming import backlog
from tests.integration.fixtures import apply_config
from tests.integration.processes import Simulator, dispatcher, wait_until

RATE, BURST, PER_MINUTE = 50, 10, 600


@pytest.mark.timeout(300)
def test_a_per_minute_cap_holds_across_four_dispatchers_for_three_minutes(conn, dsn, tmp_path, started):
    simulator = Simulator({"latency_ms": [1, 3], "destinations": {"X": {"rate": RATE, "burst": BURST}}}, tmp_path)
    started.append(simulator)
    apply_config(
        conn,
        {
            "tenant_sets": [{"name": "s"}],
            "gateways": [{"name": "sim", "kind": "simulator", "url": f"{simulator.url}/messages"}],
            "destinations": [
                {"code": "X", "gateway": "sim", "rate": RATE, "burst": BURST, "per_minute": PER_MINUTE,
                 "max_drain_seconds": 36000}
            ],
            "tenants": [
                {"name": f"t{i}", "tenant_set": "s", "senders": [{"address": f"+1555000000{i}", "type": "long_code"}]}
                for i in range(2)
            ],
            "routes": [{"prefix": "+1", "sender_type": "long_code", "destination": "X"}],
        },
    )  # fmt: skip
    for i in range(2):
        backlog(conn, f"t{i}", f"+1555000000{i}", 1500)
    start = time.time()
    started.extend(dispatcher(dsn) for _ in range(4))
    end = start + 180
    wait_until(lambda: time.time() >= end, timeout=200, interval=1, message="three minutes")
    received = [m for m in simulator.received() if m["wall"] < end]
    # by calendar minute (UTC) at the carrier: never above the cap, and the cap reached in every whole minute
    minutes = collections.Counter(int(m["wall"] // 60) for m in received)
    assert max(minutes.values()) <= PER_MINUTE, minutes
    whole = [minute for minute in minutes if minute * 60 >= start and (minute + 1) * 60 <= end]
    assert len(whole) >= 2 and all(minutes[minute] >= 0.98 * PER_MINUTE for minute in whole), minutes
    # by any second: never above rate + burst, and the carrier never had to refuse one
    times = sorted(m["at"] for m in received)
    window: collections.deque[float] = collections.deque()
    worst = 0
    for t in times:
        window.append(t)
        while window[0] <= t - 1.0:
            window.popleft()
        worst = max(worst, len(window))
    assert worst <= RATE + BURST
    assert simulator.stats()["throttled"] == {}
