"""The smpp gateway with real processes: dispatchers binding to the carrier simulator's SMPP side over
loopback (issue 14; docs/decisions/0016)."""

import collections
import queue
import signal

import pytest

from tests.fairness import Queue, fairness_error, ideal_rates
from tests.integration.claiming import backlog
from tests.integration.processes import dispatcher, wait_until
from tests.integration.smpp import SmppSimulator, configure, sent, statuses
from tools.bench.scale import worst_second


def _drain(process):
    """The lines a process printed so far (without waiting)."""
    while True:
        try:
            line = process.lines.get_nowait()
        except queue.Empty:
            return process.seen
        if line is None:
            process.lines.put(None)
            return process.seen
        process.seen.append(line)


def test_four_dispatchers_hold_the_quota_fairly_over_smpp(conn, dsn, tmp_path, started):
    rate, burst = 200, 20
    # the carrier would take 8 binds: the gateway's 2 are the gateway's own limit, not the carrier's refusal
    simulator = SmppSimulator(
        {"latency_ms": [1, 3], "destinations": {"X": {"rate": rate, "burst": burst}}, "smpp": {"max_binds": 8}},
        tmp_path,
    )
    started.append(simulator)
    configure(conn, simulator, rate=rate, burst=burst, tenants=3, set_weights=[1, 2, 3], binds=2, window=10)
    for i in range(3):
        backlog(conn, f"t{i}", f"+1555000000{i}", 1500)
    started.extend(dispatcher(dsn) for _ in range(4))
    wait_until(lambda: simulator.stats()["received"] >= rate * 12, timeout=60, message="12 s of traffic")
    received, stats = simulator.received(), simulator.stats()
    times = sorted(m["at"] for m in received)
    assert worst_second(times) <= rate + burst
    assert stats["throttled"] == {}  # no ESME_RTHROTTLED
    assert stats["smpp"]["peak_binds"] == {"fairlane": 2}  # never more binds than configured, however many processes
    assert stats["smpp"].get("window_refused", 0) == 0 and stats["smpp"].get("binds_refused", 0) == 0
    start = times[0]
    in_window = [m for m in received if start + 1 <= m["at"] < start + 11]
    assert 0.98 * rate * 10 <= len(in_window) <= rate * 10 * 1.01 + 1
    tenant_of = dict(conn.execute("SELECT m.id::text, t.name FROM fairlane.messages m JOIN fairlane.tenants t "
                                  "ON t.id = m.tenant_id").fetchall())  # fmt: skip
    shares = collections.Counter(tenant_of[m["id"]] for m in in_window)
    queues = [Queue(f"t{i}", f"t{i}", f"s{i}") for i in range(3)]
    assert fairness_error(dict(shares), ideal_rates(rate, queues, {"s0": 1, "s1": 2, "s2": 3})) <= 0.05, shares


@pytest.mark.parametrize("concatenation", ["udh", "sar"])
def test_long_messages_go_as_concatenated_parts(conn, dsn, tmp_path, started, concatenation):
    simulator = SmppSimulator({"latency_ms": [1, 2], "receipt_delay_ms": [10, 30]}, tmp_path)
    started.append(simulator)
    configure(conn, simulator, rate=100, burst=20, concatenation=concatenation)
    bodies = {"gsm": "0123456789" * 40, "emoji": "Ready? 🚀" * 20, "short": "Your code is 271828", "euro": "€" * 81}
    for body in bodies.values():
        backlog(conn, "t0", "+15550000000", 1, body=body)
    started.append(dispatcher(dsn))
    wait_until(lambda: statuses(conn).get("delivered") == 4, timeout=30, message="every message delivered")
    messages = {body: (str(i), segments, provider_id) for i, body, segments, provider_id in conn.execute(
        "SELECT id, body, segments, provider_id FROM fairlane.messages")}  # fmt: skip
    received = simulator.received()
    parts = collections.defaultdict(list)
    for part in received:
        parts[part["id"]].append(part)
    assert [messages[bodies[k]][1] for k in bodies] == [3, 3, 1, 2]  # the segments charged
    assert len(received) == sum(segments for _, segments, _ in messages.values())  # = parts the carrier got
    for name, body in bodies.items():
        message_id, segments, provider_id = messages[body]
        mine = sorted(parts[message_id], key=lambda p: p["part"])
        assert [(p["part"], p["parts"]) for p in mine] == [(n, segments) for n in range(1, segments + 1)], name
        assert "".join(p["body"] for p in mine) == body, name
        assert {p["encoding"] for p in mine} == {"UCS-2" if name == "emoji" else "GSM-7"}
        if segments > 1:
            assert len({p["reference"] for p in mine}) == 1, name  # one reference for all the parts
        assert provider_id == mine[0]["provider_id"]  # the first part's id is the message's
        kept = conn.execute("SELECT provider_id FROM fairlane.message_parts WHERE message_id = %s ORDER BY part",
                            (int(message_id),)).fetchall()  # fmt: skip
        assert [k[0] for k in kept] == [p["provider_id"] for p in mine]  # every part's id is kept


def test_throttles_back_off_and_nothing_fails(conn, dsn, tmp_path, started):
    # the carrier takes 50/s while the destination is configured for 200/s
    simulator = SmppSimulator({"latency_ms": [1, 3], "destinations": {"X": {"rate": 50, "burst": 5}}}, tmp_path)
    started.append(simulator)
    configure(conn, simulator, rate=200, burst=20)
    backlog(conn, "t0", "+15550000000", 150)
    started.append(dispatcher(dsn))
    wait_until(lambda: sent(conn) == 150, timeout=60, message="every message sent")
    throttled = simulator.stats()["throttled"]["X"]
    assert 0 < throttled < 150  # ESME_RTHROTTLED backed the destination off (AIMD), shared by the processes
    assert conn.execute("SELECT bool_and(throttled_at IS NOT NULL) FROM fairlane.destination_slices").fetchone()[0]
    assert conn.execute("SELECT max(attempts) FROM fairlane.messages").fetchone()[0] == 1  # throttles cost none
    assert simulator.stats()["duplicate_keys"] == 0


def test_a_bind_lost_mid_window_loses_nothing_and_sends_nothing_twice(conn, dsn, tmp_path, started):
    # the carrier drops the TCP session at the 40th submit_sm, with the client's window of 10 unanswered
    simulator = SmppSimulator({"latency_ms": [20, 30], "smpp": {"drop_after": 40, "max_binds": 8}}, tmp_path)
    started.append(simulator)
    configure(conn, simulator, rate=1000, burst=100, binds=1, window=10, max_in_flight=50)
    backlog(conn, "t0", "+15550000000", 150)
    process = dispatcher(dsn)
    started.append(process)
    wait_until(lambda: sent(conn) == 150, timeout=40, message="every message sent")
    stats = simulator.stats()
    assert stats["smpp"]["sessions_dropped"] == 1 and stats["smpp"]["dropped_unanswered"] >= 5
    # what the carrier accepted (answered ESME_ROK) went exactly once; what it never answered was retried with
    # the same fairlane id; every message reached it
    received = collections.Counter(m["id"] for m in simulator.received())
    assert set(received.values()) == {1}
    assert set(received) == {str(r[0]) for r in conn.execute("SELECT id FROM fairlane.messages")}
    retried = conn.execute(
        "SELECT count(*) FROM fairlane.message_events WHERE status = 'queued' AND detail->>'reason' = 'retry'"
    ).fetchone()[0]
    twice = conn.execute("SELECT count(*) FROM fairlane.messages WHERE attempts = 2").fetchone()[0]
    assert retried == twice == stats["smpp"]["dropped_unanswered"]  # an attempt each, then sent
    assert any("smpp session lost" in line for line in _drain(process))
    assert stats["smpp"]["peak_binds"] == {"fairlane": 1}


def test_sigkill_mid_window_loses_nothing_and_binds_stay_within_the_limit(conn, dsn, tmp_path, started):
    simulator = SmppSimulator({"latency_ms": [200, 300], "smpp": {"max_binds": 8}}, tmp_path)  # above binds = 2
    started.append(simulator)
    configure(conn, simulator, rate=1000, burst=100, binds=2, window=10, timeout_seconds=2)
    backlog(conn, "t0", "+15550000000", 200)
    processes = [dispatcher(dsn, "--lease", "1") for _ in range(2)]
    started.extend(processes)
    victim = wait_until(
        lambda: next((p for p in processes if any("batch claimed" in line for line in _drain(p))), None),
        message="a dispatcher claiming",
    )
    victim.signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL
    wait_until(lambda: sent(conn) == 200, timeout=60, message="every message sent")
    stats = simulator.stats()
    assert stats["smpp"]["peak_binds"]["fairlane"] <= 2 and stats["smpp"].get("binds_refused", 0) == 0
    rescued = {
        str(r[0])
        for r in conn.execute(
            "SELECT message_id FROM fairlane.message_events WHERE detail->>'reason' = 'lease_expired'"
        )
    }
    assert rescued  # the victim held messages in its window when it died
    received = collections.Counter(m["id"] for m in simulator.received())
    assert {key for key, n in received.items() if n > 1} <= rescued  # only those were seen twice, same id
    assert set(received) == {str(r[0]) for r in conn.execute("SELECT id FROM fairlane.messages")}


def test_sigterm_drains_and_unbinds_cleanly(conn, dsn, tmp_path, started):
    simulator = SmppSimulator({"latency_ms": [100, 200]}, tmp_path)
    started.append(simulator)
    configure(conn, simulator, rate=200, burst=20, binds=2)
    backlog(conn, "t0", "+15550000000", 1000)
    process = dispatcher(dsn, "--grace", "5")
    started.append(process)
    process.wait_for_line("batch claimed")
    process.wait_for_lines("smpp bound", 2)
    process.signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    found = statuses(conn)
    assert "sending" not in found  # answered or released, none left leased
    assert sent(conn) > 0 and sent(conn) + found["queued"] == 1000
    smpp = simulator.stats()["smpp"]
    assert smpp["unbinds"] == 2 and smpp["binds"] == {"fairlane": 0}  # both binds ended with unbind


def test_receipts_delivered_undelivered_late_duplicate_and_unknown(conn, dsn, tmp_path, started):
    simulator = SmppSimulator(
        {
            "latency_ms": [1, 2],
            "receipt_delay_ms": [5, 50],
            "undelivered_rate": 0.2,
            "duplicate_receipt_rate": 0.3,
            "smpp": {"late_receipt_rate": 0.2, "late_receipt_delay_ms": [1500, 2500], "unknown_receipt_rate": 0.2},
        },
        tmp_path,
    )
    started.append(simulator)
    configure(conn, simulator, rate=500, burst=50)
    backlog(conn, "t0", "+15550000000", 80)
    backlog(conn, "t0", "+15550000000", 20, body="a long one " * 20)  # two parts each
    process = dispatcher(dsn)
    started.append(process)

    def settled():
        found = statuses(conn)
        return found.get("delivered", 0) + found.get("undelivered", 0) == 100

    wait_until(settled, timeout=30, message="every message delivered or undelivered")
    found = statuses(conn)
    assert found["undelivered"] > 0 and found["delivered"] > 50
    codes = {
        r[0] for r in conn.execute("SELECT DISTINCT error_code FROM fairlane.messages WHERE status = 'undelivered'")
    }
    assert codes == {"UNDELIV:005"}
    # duplicates (and receipts of the other parts) added no event: one receipt event per message
    doubled = conn.execute(
        "SELECT count(*) FROM (SELECT message_id FROM fairlane.message_events WHERE status IN "
        "('delivered', 'undelivered') GROUP BY message_id HAVING count(*) > 1) d"
    ).fetchone()[0]
    assert doubled == 0
    # a two-part message is delivered only when both parts are
    wrong = conn.execute(
        """SELECT count(*) FROM fairlane.messages m
           WHERE m.segments = 2 AND m.status <> (SELECT CASE WHEN bool_and(p.status = 'delivered') THEN 'delivered'
                                                             ELSE 'undelivered' END
                                                 FROM fairlane.message_parts p WHERE p.message_id = m.id)"""
    ).fetchone()[0]
    assert wrong == 0
    stats = simulator.stats()["smpp"]
    assert stats["late_receipts"] > 0 and stats["unknown_receipts"] > 0
    wait_until(
        lambda: (
            conn.execute("SELECT count(*) FROM fairlane.message_parts WHERE message_id IS NULL").fetchone()[0]
            == stats["unknown_receipts"]
        ),
        timeout=10,
        message="every receipt for an unknown id kept aside",
    )
    lines = _drain(process)
    assert any("smpp receipt for an unknown id" in line for line in lines)
    assert any("smpp duplicate receipt" in line for line in lines)
