"""Concurrent claims of one destination (docs/decisions/0011): they lock different slices of its token
bucket instead of queueing on one row, and a claimer that finds every eligible queue locked shares it."""

import threading
import time

import psycopg

from tests.integration.claiming import backlog, setup

CLAIM = "SELECT message_id FROM fairlane.claim_v2(%s, %s, 30)"
FREE_SLICES = """SELECT count(*) FROM (
    SELECT FROM fairlane.destination_slices WHERE destination_id = %s FOR NO KEY UPDATE SKIP LOCKED) s"""


def test_eight_claimers_of_one_destination_do_not_wait_for_each_other(conn, dsn):
    tenants = [(f"t{i}", "s", 1, [(f"+1555000000{i}", None)]) for i in range(8)]
    destination = setup(conn, rate=10_000, burst=2_000, tenant_sets=[("s", 1)], tenants=tenants)
    for name, _, _, [(sender, _)] in tenants:
        backlog(conn, name, sender, 20)
    # the first claim after queues join recomputes the portions, writing (so locking) every active queue
    # until it commits; the claims below find the portions fresh
    assert len(conn.execute(CLAIM, (destination, 1)).fetchall()) == 1
    claimers = [psycopg.connect(dsn) for _ in range(8)]
    try:
        claimed = []
        for claimer in claimers:
            # a claim that had to wait for another's transaction would fail here
            claimer.execute("SET lock_timeout = '500ms'")
            rows = claimer.execute(CLAIM, (destination, 1)).fetchall()
            assert len(rows) == 1
            claimed.append(rows[0][0])
        # eight transactions are open, each holding one slice of the bucket and its own queue
        assert len(set(claimed)) == 8
        assert conn.execute(FREE_SLICES, (destination,)).fetchone()[0] == 0
        # a ninth claim finds no slice free: it returns at once, empty, rather than waiting
        conn.execute("SET lock_timeout = '500ms'")
        assert conn.execute(CLAIM, (destination, 1)).fetchall() == []
        for claimer in claimers:
            claimer.commit()
        assert conn.execute(FREE_SLICES, (destination,)).fetchone()[0] == 8
        sending = conn.execute("SELECT count(*) FROM fairlane.messages WHERE status = 'sending'").fetchone()[0]
        assert sending == 9
    finally:
        for claimer in claimers:
            claimer.close()


def test_a_claimer_shares_a_queue_another_claim_holds(conn, dsn):
    destination = setup(
        conn, rate=10_000, burst=2_000, tenant_sets=[("s", 1)], tenants=[("bulk", "s", 1, [("+15550000001", None)])]
    )
    backlog(conn, "bulk", "+15550000001", 100)
    first = psycopg.connect(dsn)
    second = psycopg.connect(dsn, autocommit=True)
    try:
        ids_first = [r[0] for r in first.execute(CLAIM, (destination, 10)).fetchall()]
        assert len(ids_first) == 10
        result: dict[str, list[int]] = {}
        pid = second.info.backend_pid
        worker = threading.Thread(
            target=lambda: result.setdefault("ids", [r[0] for r in second.execute(CLAIM, (destination, 10)).fetchall()])
        )
        worker.start()
        # the second claim locks other messages of the same queue, then waits for the first to write the queue
        deadline = time.monotonic() + 10
        while conn.execute(
            "SELECT wait_event_type IS DISTINCT FROM 'Lock' FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone()[0]:
            assert time.monotonic() < deadline, "the second claim never waited for the queue row"
        first.commit()
        worker.join(timeout=10)
        assert not worker.is_alive()
        ids_second = result["ids"]
        assert len(ids_second) == 10 and not set(ids_first) & set(ids_second)
        depth, sending = conn.execute(
            """SELECT q.queued_count, (SELECT count(*) FROM fairlane.messages WHERE status = 'sending')
               FROM fairlane.queues q"""
        ).fetchone()
        assert (depth, sending) == (80, 20)
    finally:
        first.close()
        second.close()
