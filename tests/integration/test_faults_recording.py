"""Faults on the dispatcher's way (docs/decisions/0019), with a real dispatcher process and the carrier
simulator: the connection that records a batch's answers cut right after the server committed it, or right
before its COMMIT; the gateway's connection cut after it took a request, before its answer came back.

The dispatcher runs with a short lease (1 s gateway timeout + 2 s), so a completion it dropped would show here:
its messages would be rescued within seconds, sent a second time and charged an attempt."""

import collections

from tests.integration.claiming import backlog
from tests.integration.faults import Proxy
from tests.integration.fixtures import apply_config
from tests.integration.processes import Simulator, dispatcher, wait_until

SENDER = "+15550000001"


def _configure(conn, gateway_url):
    apply_config(
        conn,
        {
            "tenant_sets": [{"name": "s", "weight": 1}],
            "gateways": [{"name": "sim", "kind": "simulator", "url": gateway_url, "timeout_seconds": 1}],
            "destinations": [{"code": "X", "gateway": "sim", "rate": 1000, "burst": 100, "max_drain_seconds": 36000}],
            "tenants": [{"name": "t", "tenant_set": "s", "senders": [{"address": SENDER, "type": "long_code"}]}],
            "routes": [{"prefix": "+1", "sender_type": "long_code", "destination": "X"}],
        },
    )


def _messages(conn):
    return conn.execute("SELECT id, status, attempts, error_code FROM fairlane.messages ORDER BY id").fetchall()


def _all_sent(conn, count):
    rows = _messages(conn)
    return len(rows) == count and all(status == "sent" for _, status, _, _ in rows)


def _sends(simulator):
    """How many times the simulator took each message, and with which idempotency keys."""
    counts = collections.Counter()
    keys = collections.defaultdict(set)
    for message in simulator.received():
        counts[int(message["id"])] += 1
        keys[int(message["id"])].add(message["idempotency_key"])
    return counts, keys


def _requeues(conn, message_id=None):
    """Why messages went back to their queue (every such event), optionally of one message."""
    rows = conn.execute(
        "SELECT detail ->> 'reason' FROM fairlane.message_events"
        " WHERE status = 'queued' AND detail ? 'reason' AND (%(id)s::bigint IS NULL OR message_id = %(id)s)"
        " ORDER BY id",
        {"id": message_id},
    )
    return [reason for (reason,) in rows]


def _server_socket(embedded_server):
    return f"{embedded_server.host}/.s.PGSQL.{embedded_server.port}"


def _cut_completion(conn, postgresql, embedded_server, tmp_path, started, cut):
    simulator = Simulator({"latency_ms": [1, 3]}, tmp_path)
    started.append(simulator)
    _configure(conn, f"{simulator.url}/messages")
    backlog(conn, "t", SENDER, 20)
    with Proxy(_server_socket(embedded_server), postgres=True) as proxy:
        fault = cut(proxy)
        process = dispatcher(proxy.dsn(postgresql.info.dbname), "--batch-size", "5", "--lease", "2")
        started.append(process)
        assert fault.fired.wait(timeout=30), "no completion was cut"
        wait_until(lambda: _all_sent(conn, 20), timeout=30, message="every message sent")
    counts, keys = _sends(simulator)
    assert sorted(counts) == [row[0] for row in _messages(conn)]
    assert set(counts.values()) == {1}, counts  # exactly one send per message
    assert all(key == {str(message_id)} for message_id, key in keys.items())
    # one attempt each, the send that finished it: none spent by a retry or a lease rescue
    assert {(attempts, error_code) for _, _, attempts, error_code in _messages(conn)} == {(1, None)}
    # never rescued (`lease_expired`) nor retried; a release (a send slot missed on a busy machine, before any
    # send) gives the message back without using an attempt
    assert set(_requeues(conn)) <= {"release"}
    process.wait_for_line("transaction retried")  # the answers were kept and recorded on a new connection


def test_completion_cut_after_commit_is_not_recorded_twice(conn, postgresql, embedded_server, tmp_path, started):
    """The completion committed, its answer never reached the dispatcher: the dispatcher tries again on a new
    connection, finds the claim already completed and changes nothing."""
    _cut_completion(
        conn,
        postgresql,
        embedded_server,
        tmp_path,
        started,
        lambda proxy: proxy.cut_after_commit("complete_v1", value=b"sent"),  # a completion recording sends
    )


def test_completion_cut_before_commit_is_recorded_again(conn, postgresql, embedded_server, tmp_path, started):
    """The completion was rolled back: the dispatcher kept the answers and records them on a new connection,
    well within the lease, so nothing is sent twice and no attempt is spent."""
    _cut_completion(
        conn,
        postgresql,
        embedded_server,
        tmp_path,
        started,
        lambda proxy: proxy.cut_before_commit("complete_v1", value=b"sent"),
    )


def test_gateway_cut_mid_request_is_retried_with_the_same_key(conn, dsn, tmp_path, started):
    """The gateway took the message and its answer was lost on the way back: the dispatcher never records
    it as sent without an answer; it sends it again later with the same Idempotency-Key (one attempt used)."""
    simulator = Simulator({"latency_ms": [1, 3]}, tmp_path)
    started.append(simulator)
    with Proxy(("127.0.0.1", simulator.port), postgres=False) as proxy:
        _configure(conn, f"{proxy.url}/messages")
        backlog(conn, "t", SENDER, 10)
        fault = proxy.cut_answer()
        started.append(dispatcher(dsn, "--batch-size", "5", "--lease", "2"))
        assert fault.fired.wait(timeout=30), "no answer was cut"
        wait_until(lambda: _all_sent(conn, 10), timeout=30, message="every message sent")
    counts, keys = _sends(simulator)
    twice = [message_id for message_id, count in counts.items() if count > 1]
    assert len(twice) == 1 and counts[twice[0]] == 2, counts
    assert keys[twice[0]] == {str(twice[0])}  # the same Idempotency-Key both times
    assert all(count == 1 for message_id, count in counts.items() if message_id != twice[0])
    # back to its queue to be retried, not `sent`; `sent` once, at the end (releases, before any send, aside)
    assert [reason for reason in _requeues(conn, twice[0]) if reason != "release"] == ["retry"]
    history = [
        status
        for (status,) in conn.execute(
            "SELECT status FROM fairlane.message_events WHERE message_id = %s ORDER BY id", (twice[0],)
        )
    ]
    assert history.count("sent") == 1 and history[-1] == "sent", history
    # the retry used one attempt, the send that finished each message one
    attempts = dict(conn.execute("SELECT id, attempts FROM fairlane.messages").fetchall())
    assert attempts.pop(twice[0]) == 2 and set(attempts.values()) == {1}, attempts
