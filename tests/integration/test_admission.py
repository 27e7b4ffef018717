"""Admission control: a queue whose projected drain time (queued segments / its portion) would exceed the
destination's max_drain_seconds, or the message's validity, rejects new messages with queue_overflow;
other queues are unaffected; acceptance resumes below the threshold."""

import threading

import psycopg
import pytest

from tests.integration.fixtures import BASIC, apply_basic, apply_config, error_detail, insert_outbox, submit


def _small(conn, rate=10, max_drain_seconds=10):
    """US-LC at `rate` segments/s, draining at most `max_drain_seconds`."""
    destinations = [
        {**d, "rate": rate, "max_drain_seconds": max_drain_seconds} if d["code"] == "US-LC" else d
        for d in BASIC["destinations"]
    ]
    apply_basic(conn, destinations=destinations)


def _send(conn, tenant="globex", **fields):
    return submit(conn, tenant=tenant, recipient="+15551234567", body="x", **fields)


def test_overflow_at_max_drain(conn):
    _small(conn)  # globex alone on US-LC: portion 10/s, 10 s -> 100 segments
    for _ in range(100):
        _send(conn)
    with pytest.raises(psycopg.Error) as raised:
        _send(conn)
    error = raised.value
    detail = error_detail(error)
    assert error.sqlstate == "FL429" and detail["code"] == "queue_overflow"
    assert detail["tenant"] == "globex" and detail["destination"] == "US-LC"
    assert detail["queued_segments"] == 101 and detail["portion"] == 10.0
    assert detail["retry_after_seconds"] == 1
    assert "globex / US-LC / +15550100002 is full" in error.diag.message_primary
    state = conn.execute("SELECT depth, admission FROM fairlane.queue_state WHERE tenant = 'globex'").fetchone()
    assert state == (100, "closed")
    # other queues are unaffected, including acme's on the same destination
    _send(conn, tenant="acme", sender="+15550100001")
    submit(conn, tenant="acme", recipient="+15551234567", body="x")


def test_portion_shrinks_as_tenants_join(conn):
    _small(conn)  # retail (globex) weight 1, enterprise (acme) weight 3
    _send(conn, tenant="acme", sender="+15550100001")  # acme active: globex's portion is 10 * 1/4 = 2.5/s
    for _ in range(25):
        _send(conn)
    with pytest.raises(psycopg.Error) as raised:
        _send(conn)
    assert error_detail(raised.value)["portion"] == 2.5


def test_multi_segment_messages_count_segments(conn):
    _small(conn)
    for _ in range(33):
        submit(conn, tenant="globex", recipient="+15551234567", body="y" * 400)  # 3 segments
    with pytest.raises(psycopg.Error):
        submit(conn, tenant="globex", recipient="+15551234567", body="y" * 400)  # 102 > 100
    _send(conn)  # one more segment fits exactly


def test_validity_shorter_than_drain_is_rejected(conn):
    _small(conn, max_drain_seconds=1000)
    for _ in range(50):
        _send(conn)
    # 51 segments at 10/s take 5.1 s: a message valid for 5 s would expire in the queue
    with pytest.raises(psycopg.Error) as raised:
        _send(conn, validity_seconds=5)
    assert error_detail(raised.value)["max_drain_seconds"] == 5
    _send(conn, validity_seconds=6)


def test_batch_over_the_threshold_rejected_whole(conn):
    _small(conn)
    rows = [{"tenant": "globex", "recipient": "+15551234567", "body": "x"}] * 101
    with pytest.raises(psycopg.Error) as raised:
        insert_outbox(conn, rows)
    assert error_detail(raised.value)["row"] == 101
    assert conn.execute("SELECT count(*) FROM fairlane.messages").fetchone()[0] == 0
    insert_outbox(conn, rows[:100])


def test_acceptance_resumes_when_the_quota_grows(conn):
    _small(conn)
    for _ in range(100):
        _send(conn)
    with pytest.raises(psycopg.Error):
        _send(conn)
    destinations = [
        {**d, "rate": 20, "max_drain_seconds": 10} if d["code"] == "US-LC" else d for d in BASIC["destinations"]
    ]
    apply_config(conn, {**BASIC, "destinations": destinations})
    _send(conn)
    assert conn.execute("SELECT admission FROM fairlane.queue_state WHERE tenant = 'globex'").fetchone()[0] == "open"


def test_scheduled_messages_are_not_admitted_yet(conn):
    _small(conn)
    import datetime as dt

    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    for _ in range(150):
        _send(conn, send_at=later)
    assert conn.execute("SELECT count(*) FROM fairlane.messages WHERE status = 'scheduled'").fetchone()[0] == 150


def test_concurrent_inserts_into_one_queue_never_exceed_the_threshold(conn, dsn):
    _small(conn, rate=10, max_drain_seconds=30)  # room for exactly 300 segments
    workers, per_worker = 6, 80
    accepted = [0] * workers
    rejected = [0] * workers
    barrier = threading.Barrier(workers)

    def run(index):
        with psycopg.connect(dsn, autocommit=True) as connection:
            barrier.wait()
            for _ in range(per_worker):
                try:
                    insert_outbox(connection, [{"tenant": "globex", "recipient": "+15551234567", "body": "x"}] * 2)
                    accepted[index] += 2
                except psycopg.errors.RaiseException:
                    raise
                except psycopg.Error as error:
                    assert error.sqlstate == "FL429"
                    rejected[index] += 2

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(accepted) == 300
    assert sum(rejected) == workers * per_worker * 2 - 300
    row = conn.execute("SELECT queued_count, queued_segments FROM fairlane.queues").fetchone()
    assert row == (300, 300)
    assert conn.execute("SELECT count(*) FROM fairlane.messages").fetchone()[0] == 300


def test_a_batch_that_fits_row_by_row_is_accepted(conn):
    _small(conn, rate=1, max_drain_seconds=1000)
    # the first row may only wait 5 s, and waits 1 s; the other ten wait longer, within their validity
    rows = [{"tenant": "globex", "recipient": "+15551234567", "body": "x", "validity_seconds": 5}]
    rows += [{"tenant": "globex", "recipient": "+15551234567", "body": "x"}] * 10
    insert_outbox(conn, rows)
    assert conn.execute("SELECT count(*) FROM fairlane.messages").fetchone()[0] == 11
