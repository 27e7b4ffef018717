"""Processes killed with SIGKILL mid-work (docs/decisions/0019): the API while concurrent submissions are being
group-committed, and the callback sender while it posts. Real processes, the test's database."""

import collections
import signal
import threading

from tests.integration.api import ADMIN_TOKEN
from tests.integration.claiming import backlog
from tests.integration.faults import Receiver, post_message
from tests.integration.fixtures import apply_config
from tests.integration.processes import Process, Simulator, dispatcher, free_port, wait_until

SENDER = "+15550000001"


def _configure(conn, gateway_url="http://127.0.0.1:9/messages", status_callback=None):
    tenant = {"name": "t", "tenant_set": "s", "senders": [{"address": SENDER, "type": "long_code"}]}
    if status_callback is not None:
        tenant["status_callback"] = status_callback
    return apply_config(
        conn,
        {
            "tenant_sets": [{"name": "s", "weight": 1}],
            "gateways": [{"name": "sim", "kind": "simulator", "url": gateway_url, "timeout_seconds": 2}],
            "destinations": [{"code": "X", "gateway": "sim", "rate": 1000, "burst": 100, "max_drain_seconds": 36000}],
            "tenants": [tenant],
            "routes": [{"prefix": "+1", "sender_type": "long_code", "destination": "X"}],
            "callbacks": {"allow_networks": ["127.0.0.0/8"], "allow_http": True},
        },
    )


def _start_api(dsn):
    port = free_port()
    env = {"DATABASE_URL": dsn, "FAIRLANE_ADMIN_TOKEN": ADMIN_TOKEN, "FAIRLANE_TENANT_RATE": "0"}
    api = Process(["api", "--port", str(port)], env=env)
    api.wait_for_line("api listening")
    return api, f"http://127.0.0.1:{port}"


def test_api_killed_during_group_commits_leaves_no_202_unbacked(conn, dsn, started):
    api_key = _configure(conn).api_keys["t"]
    api, base = _start_api(dsn)
    started.append(api)
    answers: dict[str, tuple] = {}
    stop = threading.Event()

    def client(number):
        for i in range(10_000):
            key = f"c{number}-{i}"
            answers[key] = post_message(base, api_key, key)
            if answers[key][0] is None or stop.is_set():
                return

    clients = [threading.Thread(target=client, args=(n,)) for n in range(16)]
    for thread in clients:
        thread.start()
    # sixteen clients at once: their submissions are written in groups, one call for many requests
    wait_until(lambda: sum(status == 202 for status, _ in answers.values()) >= 300, timeout=60, message="300 accepted")
    api.signal(signal.SIGKILL)
    stop.set()
    for thread in clients:
        thread.join(timeout=30)
    cut = [key for key, (status, _) in answers.items() if status is None]
    assert cut, "no request was in flight when the API was killed"
    assert {status for status, _ in answers.values()} <= {202, None}

    held = collections.defaultdict(list)
    for key, message_id in conn.execute("SELECT idempotency_key, id FROM fairlane.messages"):
        held[key].append(message_id)
    for key, (status, message_id) in answers.items():
        if status == 202:
            assert held[key] == [int(message_id)], key  # every 202 is backed by its message, once
        else:
            assert len(held[key]) <= 1, key

    # the clients whose answers were lost send again with their keys: one message each, never two
    again, base = _start_api(dsn)
    started.append(again)
    for key in cut:
        status, message_id = post_message(base, api_key, key)
        assert status == 202
        if held[key]:
            assert int(message_id) == held[key][0]
    (duplicates,) = conn.execute(
        "SELECT count(*) FROM (SELECT idempotency_key FROM fairlane.messages GROUP BY 1 HAVING count(*) > 1) d"
    ).fetchone()
    assert duplicates == 0


def test_callback_sender_killed_mid_work_still_delivers_every_callback(conn, dsn, tmp_path, started):
    receiver = Receiver(hold_after=30)
    try:
        simulator = Simulator({"latency_ms": [1, 3]}, tmp_path)
        started.append(simulator)
        _configure(conn, f"{simulator.url}/messages", status_callback=receiver.url)
        backlog(conn, "t", SENDER, 100)
        env = {"DATABASE_URL": dsn}
        # a short lease (a post's 3 s + 1 s), so what the killed sender held comes due within seconds; the
        # receiver holds every post after its 30th, so the sender is killed with those in flight
        first = Process(["callbacks", "--per-tenant", "5", "--timeout", "3", "--lease", "1"], env=env)
        started.append(first)
        first.wait_for_line("callbacks started")
        started.append(dispatcher(dsn))
        wait_until(lambda: receiver.held >= 1, timeout=60, message="30 callbacks, then posts in flight")
        first.signal(signal.SIGKILL)
        first.wait(timeout=10)
        receiver.release()
        leased = conn.execute(
            "SELECT count(*) FROM fairlane.callbacks WHERE delivered_at IS NULL AND attempts > 0"
        ).fetchone()[0]
        assert leased > 0, "the sender was killed with nothing in flight"
        second = Process(["callbacks", "--timeout", "2", "--lease", "1"], env=env)
        started.append(second)

        def all_delivered():
            # every message finished, and a delivered callback for each event of its history (queued, sending,
            # sent; and a `sending`, `queued` pair for each release of a message that missed its send slot)
            (live,) = conn.execute("SELECT count(*) FROM fairlane.messages_live").fetchone()
            (events,) = conn.execute("SELECT count(*) FROM fairlane.message_events").fetchone()
            delivered, total = conn.execute(
                "SELECT count(*) FILTER (WHERE delivered_at IS NOT NULL), count(*) FROM fairlane.callbacks"
            ).fetchone()
            return live == 0 and delivered == total == events >= 300

        wait_until(all_delivered, timeout=60, message="every callback delivered")
        history = collections.defaultdict(list)
        for message_id, event_id, status in conn.execute(
            "SELECT message_id, id, status FROM fairlane.message_events ORDER BY message_id, id"
        ):
            history[str(message_id)].append((str(event_id), status))
        announced = collections.defaultdict(dict)
        for payload in receiver.received:
            data = payload["data"]
            announced[data["message_id"]][data["sequence"]] = (data["event_id"], data["status"])
        assert set(announced) == set(history)
        for message_id, events in history.items():
            # each of its callbacks at least once; ordered by sequence, they are its history
            sequences = sorted(announced[message_id])
            assert sequences == list(range(1, len(events) + 1)), (message_id, sequences)
            assert [announced[message_id][sequence] for sequence in sequences] == events
    finally:
        receiver.stop()
