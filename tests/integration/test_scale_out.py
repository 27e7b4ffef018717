"""Many dispatchers on one destination (docs/decisions/0018): fair and within the quota whatever their number,
no polling for tokens, no bunching at the carrier after a stall. Real dispatcher processes and the carrier
simulator on loopback."""

import collections
import signal
import time

from tests.fairness import Queue, fairness_error, ideal_rates
from tests.integration.claiming import Clock, backlog, setup
from tests.integration.fixtures import apply_config
from tests.integration.processes import Simulator, dispatcher, wait_until
from tools.bench.processes import process_cpu
from tools.bench.scale import worst_second

RATE, BURST = 200, 20


def _configure(conn, simulator, *, rate=RATE, burst=BURST, set_weights=(1, 2, 3), light=False):
    sets = [(f"s{i}", weight) for i, weight in enumerate(set_weights)] + ([("light", 1)] if light else [])
    config = {
        "tenant_sets": [{"name": name, "weight": weight} for name, weight in sets],
        "gateways": [{"name": "sim", "kind": "simulator", "url": f"{simulator.url}/messages", "timeout_seconds": 2}],
        "destinations": [{"code": "X", "gateway": "sim", "rate": rate, "burst": burst, "max_drain_seconds": 36000}],
        "tenants": [
            {"name": f"t{i}", "tenant_set": name, "senders": [{"address": f"+1555000000{i}", "type": "long_code"}]}
            for i, (name, _) in enumerate(sets)
        ],
        "routes": [{"prefix": "+1", "sender_type": "long_code", "destination": "X"}],
    }
    apply_config(conn, config)


def _cpu(process):
    return process_cpu([process.popen.pid])[process.popen.pid]


def test_eight_dispatchers_split_fairly_within_the_quota(conn, dsn, tmp_path, started):
    simulator = Simulator({"latency_ms": [1, 3], "destinations": {"X": {"rate": RATE, "burst": BURST}}}, tmp_path)
    started.append(simulator)
    _configure(conn, simulator, light=True)
    for i in range(3):
        backlog(conn, f"t{i}", f"+1555000000{i}", 1500)
    started.extend(dispatcher(dsn) for _ in range(8))
    wait_until(lambda: simulator.stats()["received"] >= RATE * 6, timeout=60, message="6 s of traffic")
    # a light tenant far below its portion: its messages go within a claim or two of arriving
    light = [
        conn.execute(
            "SELECT fairlane.submit(tenant => 't3', recipient => '+15559990000', body => %s)", (f"code {i}",)
        ).fetchone()[0]
        for i in range(10)
    ]
    wait_until(lambda: simulator.stats()["received"] >= RATE * 13, timeout=60, message="13 s of traffic")
    received = simulator.received()
    times = [m["at"] for m in received]
    start = min(times)
    assert worst_second(times) <= RATE + BURST
    assert simulator.stats()["throttled"] == {}
    heavy = [m for m in received if m["tenant"] != "t3" and start + 1 <= m["at"] < start + 11]
    assert len([m for m in received if start + 1 <= m["at"] < start + 11]) >= 0.98 * RATE * 10
    queues = [Queue(f"t{i}", f"t{i}", f"s{i}") for i in range(3)]
    ideal = ideal_rates(RATE, queues, {"s0": 1, "s1": 2, "s2": 3})
    shares = collections.Counter(m["tenant"] for m in heavy)
    assert fairness_error(dict(shares), ideal) <= 0.05, shares
    waits = conn.execute(
        """SELECT max(extract(epoch FROM e.at - m.created_at)) FROM fairlane.messages m
           JOIN fairlane.message_events e ON e.message_id = m.id AND e.status = 'sending'
           WHERE m.id = ANY(%s)""",
        (light,),
    ).fetchone()[0]
    assert waits is not None and waits < 1.0, waits


def test_an_empty_bucket_says_when_its_next_tokens_come(conn):
    destination = setup(
        conn, rate=10, burst=4, tenant_sets=[("s", 1)], tenants=[("t", "s", 1, [("+15550000001", None)])]
    )
    clock = Clock(conn, destination)
    claim = "SELECT cardinality(messages), ready_at FROM fairlane.claim_v3(%s, 100, 30, %s)"
    # nothing waiting to go: no time to come back (a NOTIFY will wake the claimer)
    assert conn.execute(claim, (destination, clock.at(0))).fetchone() == (0, None)
    backlog(conn, "t", "+15550000001", 20)
    taken, ready_at = conn.execute(claim, (destination, clock.at(0))).fetchone()
    # the bucket's capacity: the burst less the send slot's worth of the rate (half the burst's worth, 0.2 s)
    assert taken == 2
    # empty now: come back for one token (half the capacity, at most 50 ms of the rate, at least one), in
    # 0.1 s at 10/s
    assert ready_at == clock.at(0.1)
    taken, ready_at = conn.execute(claim, (destination, clock.at(0.05))).fetchone()
    assert (taken, ready_at) == (0, clock.at(0.1))
    taken, _ = conn.execute(claim, (destination, clock.at(0.1))).fetchone()
    assert taken == 1


def test_the_send_slot_is_what_the_burst_can_spare(conn):
    slots = conn.execute(
        """SELECT fairlane.send_slot_v1(r, b) FROM (VALUES (200, 20), (10, 4), (1000000, 1000000), (100, 1000),
           (5000, 1)) v(r, b)"""
    ).fetchall()
    assert [slot for (slot,) in slots] == [0.05, 0.2, 0.5, 1.0, 0.05]


def test_token_starved_dispatchers_stay_idle(conn, dsn, tmp_path, started):
    """Three dispatchers, one destination at 200/s with a backlog: one claims, paced by the tokens; the
    others spend next to no CPU on it."""
    simulator = Simulator({"latency_ms": [1, 3]}, tmp_path)
    started.append(simulator)
    _configure(conn, simulator, set_weights=(1,))
    backlog(conn, "t0", "+15550000000", 3000)
    processes = [dispatcher(dsn) for _ in range(3)]
    started.extend(processes)
    wait_until(lambda: simulator.stats()["received"] >= RATE, timeout=60, message="a second of traffic")
    before = [_cpu(p) for p in processes]
    sent_before = simulator.stats()["received"]
    time.sleep(4)  # the span measured, not a wait for something to happen
    cpu = sorted(_cpu(p) - b for p, b in zip(processes, before, strict=True))
    sent = simulator.stats()["received"] - sent_before
    assert sent >= 0.9 * RATE * 4
    assert cpu[0] < 0.2 and cpu[1] < 0.2, cpu  # the two without the lease: maintenance and leases only
    assert cpu[2] / sent < 0.003, (cpu, sent)  # the claimer: well under 3 ms of CPU per message


def test_a_stalled_dispatcher_does_not_bunch_its_sends(conn, dsn, tmp_path, started):
    """The dispatcher stops for 2 s right after a claim took its tokens (SIGSTOP while the claim's transaction
    is still in the database: a trigger of the test holds it there): when it resumes, the batch is past its
    slot and goes back to its queue instead of to the carrier, which never sees more than rate + burst."""
    simulator = Simulator({"latency_ms": [1, 2], "destinations": {"X": {"rate": RATE, "burst": BURST}}}, tmp_path)
    started.append(simulator)
    _configure(conn, simulator, set_weights=(1,))
    backlog(conn, "t0", "+15550000000", 3000)
    conn.execute("CREATE TABLE public.stall (armed boolean)")
    conn.execute(
        """CREATE FUNCTION public.stall_once() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
               IF EXISTS (SELECT FROM public.stall WHERE armed) THEN
                   UPDATE public.stall SET armed = false;
                   PERFORM pg_sleep(0.5);
               END IF;
               RETURN NULL;
           END $$"""
    )
    conn.execute(
        "CREATE TRIGGER stall AFTER UPDATE ON fairlane.destination_slices FOR EACH STATEMENT "
        "EXECUTE FUNCTION public.stall_once()"
    )
    process = dispatcher(dsn)
    started.append(process)
    wait_until(lambda: simulator.stats()["received"] >= RATE * 2, timeout=60, message="2 s of traffic")
    conn.execute("INSERT INTO public.stall VALUES (true)")
    sleeping = "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND query LIKE '%claim_v4%'"
    wait_until(lambda: conn.execute(sleeping).fetchone()[0] == 1, timeout=10, message="the claim held")
    process.signal(signal.SIGSTOP)
    stopped_at = time.monotonic()
    time.sleep(2)  # the stall itself
    process.signal(signal.SIGCONT)
    assert time.monotonic() - stopped_at >= 2
    wait_until(lambda: simulator.stats()["received"] >= RATE * 6, timeout=60, message="more traffic after")
    assert worst_second([m["at"] for m in simulator.received()]) <= RATE + BURST
    assert simulator.stats()["throttled"] == {}
    released = conn.execute(
        "SELECT count(*) FROM fairlane.message_events WHERE status = 'queued' AND detail->>'reason' = 'release'"
    ).fetchone()[0]
    assert released > 0  # the stalled batch went back to its queue


def test_leases_share_destinations_among_processes(conn, dsn, tmp_path, started):
    """Four destinations, two dispatchers: each dispatcher claims for two of them."""
    simulator = Simulator({"latency_ms": [1, 2]}, tmp_path)
    started.append(simulator)
    config = {
        "tenant_sets": [{"name": "s"}],
        "gateways": [{"name": "sim", "kind": "simulator", "url": f"{simulator.url}/messages"}],
        "destinations": [{"code": f"D{i}", "gateway": "sim", "rate": 100} for i in range(4)],
    }
    apply_config(conn, config)
    processes = [dispatcher(dsn) for _ in range(2)]
    started.extend(processes)
    leases = (
        "SELECT a.pid, count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.classid = hashtext('fairlane.claimer')::oid "
        "AND a.application_name = 'fairlane dispatcher' GROUP BY a.pid"
    )

    def balanced():
        counts = sorted(n for _, n in conn.execute(leases).fetchall())
        return counts == [2, 2]

    wait_until(balanced, timeout=30, message="two destinations each")
