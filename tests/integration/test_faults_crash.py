"""PostgreSQL crashes under load (docs/decisions/0019): the API, two dispatchers and the callback sender run as
real processes against a server of the test's own (never the session's), with clients submitting over HTTP
and SQL and retrying with their idempotency keys; the server is stopped with `pg_ctl stop -m immediate` and
started again. Nothing is restarted by hand, and afterwards: every accepted message (a 202, a committed INSERT)
is in the database once and reaches a finished status; the carrier saw a message twice only with the same key
and only when it was in flight at the crash; every status callback announced is one the database holds, at
its place in the message's history."""

import collections
import threading
import time
import urllib.error
import urllib.request

import psycopg
import pytest

from db import migrate
from tests.integration.api import ADMIN_TOKEN
from tests.integration.faults import OwnServer, Receiver, post_message
from tests.integration.fixtures import apply_config
from tests.integration.processes import Process, Simulator, free_port, wait_until

SENDER = "+15550000001"


def _ready(base):
    try:
        with urllib.request.urlopen(f"{base}/readyz", timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


class Load:
    """Clients that keep submitting, each message until it is accepted, with the same key every time: four
    over HTTP (single POSTs), one over SQL (5 rows per INSERT into fairlane.outbox, one transaction)."""

    def __init__(self, base, api_key, dsn):
        self.base, self.api_key, self.dsn = base, api_key, dsn
        self.accepted: dict[str, int | None] = {}  # key -> message id (HTTP) or None (SQL)
        self.answers = collections.Counter()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._http, args=(n,)) for n in range(4)]
        self.threads.append(threading.Thread(target=self._sql))
        for thread in self.threads:
            thread.start()

    def finish(self):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def _http(self, number):
        for i in range(100_000):
            key = f"http-{number}-{i}"
            while not self.stop.is_set():
                status, message_id = post_message(self.base, self.api_key, key)
                self.answers[status] += 1
                if status == 202:
                    self.accepted[key] = int(message_id)
                    break
                time.sleep(0.05)  # a client's pause before it tries again
            if self.stop.is_set():
                return

    def _sql(self):
        connection = None
        for i in range(100_000):
            keys = [f"sql-{i}-{j}" for j in range(5)]
            while not self.stop.is_set():
                try:
                    if connection is None:
                        connection = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
                    with connection.transaction():
                        connection.cursor().executemany(
                            "INSERT INTO fairlane.outbox (tenant, recipient, body, idempotency_key) "
                            "VALUES ('t', '+15557654321', %s, %s)",
                            [(f"row {key}", key) for key in keys],
                        )
                    self.accepted.update(dict.fromkeys(keys))  # committed
                    break
                except psycopg.OperationalError:
                    if connection is not None:
                        connection.close()
                    connection = None
                    time.sleep(0.1)  # a batch job's pause before it tries again
            if self.stop.is_set():
                break
        if connection is not None:
            connection.close()


@pytest.mark.timeout(240)
def test_postgresql_crash_under_load(tmp_path, started):
    server = OwnServer(tmp_path / "pgdata")
    receiver = Receiver()
    load = None
    try:
        migrate.upgrade(server.dsn)
        simulator = Simulator({"latency_ms": [1, 5]}, tmp_path)
        started.append(simulator)
        api_port = free_port()
        base = f"http://127.0.0.1:{api_port}"
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            api_key = apply_config(
                conn,
                {
                    "tenant_sets": [{"name": "s", "weight": 1}],
                    "gateways": [
                        {"name": "sim", "kind": "simulator", "url": f"{simulator.url}/messages", "timeout_seconds": 2}
                    ],
                    "destinations": [
                        {"code": "X", "gateway": "sim", "rate": 1000, "burst": 100, "max_drain_seconds": 36000}
                    ],
                    "tenants": [
                        {
                            "name": "t",
                            "tenant_set": "s",
                            "status_callback": receiver.url,
                            "senders": [{"address": SENDER, "type": "long_code"}],
                        }
                    ],
                    "routes": [{"prefix": "+1", "sender_type": "long_code", "destination": "X"}],
                    "callbacks": {"allow_networks": ["127.0.0.0/8"], "allow_http": True},
                },
            ).api_keys["t"]
        env = {"DATABASE_URL": server.dsn, "FAIRLANE_ADMIN_TOKEN": ADMIN_TOKEN, "FAIRLANE_TENANT_RATE": "0"}
        api = Process(["api", "--port", str(api_port)], env=env)
        started.append(api)
        dispatchers = [Process(["dispatch", "--workers", "1", "--lease", "8"], env=env) for _ in range(2)]
        started.extend(dispatchers)
        callbacks = Process(["callbacks", "--timeout", "2", "--lease", "2"], env=env)
        started.append(callbacks)
        api.wait_for_line("api listening")
        for process in dispatchers:
            process.wait_for_line("dispatcher started")
        callbacks.wait_for_line("callbacks started")

        load = Load(base, api_key, server.dsn)
        wait_until(lambda: len(load.accepted) >= 200 and len(simulator.received()) >= 100, timeout=60, message="load")

        server.crash()
        wait_until(lambda: _ready(base) == 503, timeout=10, message="/readyz says not ready while the database is away")
        time.sleep(2)  # the database stays away for a while (the fault, not synchronisation)
        accepted_before = len(load.accepted)
        sent_before_restart = len(simulator.received())  # sends of messages claimed before the crash
        server.start()
        restarted = time.monotonic()
        wait_until(lambda: _ready(base) == 200, timeout=30, message="/readyz ready again")
        ready_after = time.monotonic() - restarted
        wait_until(lambda: len(load.accepted) >= accepted_before + 200, timeout=60, message="accepting again")
        load.finish()

        with psycopg.connect(server.dsn, autocommit=True) as conn:

            def drained():
                return conn.execute("SELECT count(*) FROM fairlane.messages_live").fetchone()[0] == 0

            wait_until(drained, timeout=90, message="every message finished")

            def callbacks_done():
                return (
                    conn.execute("SELECT count(*) FROM fairlane.callbacks WHERE delivered_at IS NULL").fetchone()[0]
                    == 0
                )

            wait_until(callbacks_done, timeout=90, message="every callback delivered")

            held = collections.defaultdict(list)
            statuses = collections.Counter()
            for key, message_id, status in conn.execute("SELECT idempotency_key, id, status FROM fairlane.messages"):
                held[key].append(message_id)
                statuses[status] += 1
            history = collections.defaultdict(list)
            for message_id, event_id, status in conn.execute(
                "SELECT message_id, id, status FROM fairlane.message_events ORDER BY message_id, id"
            ):
                history[message_id].append((event_id, status))

        # every accepted message is there, once, and finished
        for key, message_id in load.accepted.items():
            assert len(held[key]) == 1, key
            assert message_id is None or held[key] == [message_id], key
        assert set(statuses) == {"sent"}, statuses  # the simulator sends no receipts here: no late events
        assert set(load.answers) <= {202, 503}, load.answers  # never a 500, never a hang: 503 while away

        # the carrier saw a message twice only with the same key, and only one in flight at the crash
        received = simulator.received()
        copies = collections.defaultdict(list)
        for position, message in enumerate(received):
            copies[int(message["id"])].append((position, message["idempotency_key"]))
        for message_id, sends in copies.items():
            assert {key for _, key in sends} == {str(message_id)}
            if len(sends) > 1:
                assert sends[0][0] < sent_before_restart, (message_id, sends)
        assert set(copies) == {m for ids in held.values() for m in ids}

        # every callback announced a status the database holds, at its place in the message's history
        announced = set()
        for payload in receiver.received:
            data = payload["data"]
            events = history[int(data["message_id"])]
            assert events[data["sequence"] - 1] == (int(data["event_id"]), data["status"]), data
            announced.add(int(data["event_id"]))
        assert announced == {event_id for events in history.values() for event_id, _ in events}

        # nothing was restarted: every process rode the outage out and says so
        for process in [api, *dispatchers, callbacks]:
            assert process.popen.poll() is None
        for process in [*dispatchers, callbacks]:
            process.wait_for_line("database reconnected")
        print(f"API ready {ready_after:.1f} s after the restart; {len(load.accepted)} accepted; "
              f"{sum(len(s) > 1 for s in copies.values())} sent twice")  # fmt: skip
    finally:
        if load is not None:
            load.finish()
        receiver.stop()
        server.stop()
