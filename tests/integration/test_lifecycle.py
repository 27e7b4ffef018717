"""Completion, retries, throttle back-off and recovery, lease rescue, scheduled promotion: the SQL side of
the message lifecycle (SPEC §3, §4), with an injected clock."""

import datetime as dt

import pytest

from tests.integration.claiming import Clock, backlog, setup


@pytest.fixture
def one_queue(conn):
    destination = setup(
        conn, rate=100, burst=100, tenant_sets=[("s", 1)], tenants=[("t", "s", 1, [("+15550000001", None)])]
    )
    return destination


def _claim(conn, clock, n):
    return conn.execute(
        "SELECT message_id, claim_id FROM fairlane.claim_v2(%s, %s, 30, %s)",
        (clock.destination_id, n, clock.at(clock.now)),
    ).fetchall()


def _complete(conn, clock, rows, outcome, *, delay=None, code=None, provider=None, max_attempts=3):
    n = len(rows)
    return conn.execute(
        "SELECT fairlane.complete_v1(%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            rows[0][1],
            [r[0] for r in rows],
            [outcome] * n,
            [provider] * n,
            [code] * n,
            [None] * n,
            [delay] * n,
            max_attempts,
            clock.at(clock.now),
        ),
    ).fetchone()[0]


def _message(conn, message_id):
    return conn.execute(
        "SELECT status, attempts, error_code, provider_id FROM fairlane.messages WHERE id = %s", (message_id,)
    ).fetchone()


def _events(conn, message_id):
    return [
        r[0]
        for r in conn.execute(
            "SELECT status FROM fairlane.message_events WHERE message_id = %s ORDER BY id", (message_id,)
        )
    ]


def test_sent_and_failed(conn, one_queue):
    backlog(conn, "t", "+15550000001", 2)
    clock = Clock(conn, one_queue)
    (first, second) = _claim(conn, clock, 2)
    assert _complete(conn, clock, [first], "sent", provider="p-1") == 1
    assert _complete(conn, clock, [second], "failed", code="21211") == 1
    assert _message(conn, first[0]) == ("sent", 1, None, "p-1")
    assert _message(conn, second[0]) == ("failed", 1, "21211", None)
    assert _events(conn, first[0]) == ["queued", "sending", "sent"]
    assert _events(conn, second[0]) == ["queued", "sending", "failed"]
    # a second answer for the same claim changes nothing
    assert _complete(conn, clock, [first], "failed", code="x") == 0


def test_retry_with_backoff_until_exhausted(conn, one_queue):
    backlog(conn, "t", "+15550000001", 1)
    clock = Clock(conn, one_queue)
    for attempt in (1, 2):
        rows = _claim(conn, clock, 1)
        assert len(rows) == 1
        _complete(conn, clock, rows, "retry", delay=5, code="503")
        assert _message(conn, rows[0][0])[:2] == ("queued", attempt)
        clock.now += 4
        assert _claim(conn, clock, 1) == []  # still backing off
        clock.now += 1.5
    rows = _claim(conn, clock, 1)
    _complete(conn, clock, rows, "retry", delay=5, code="503")
    assert _message(conn, rows[0][0])[:3] == ("failed", 3, "retries_exhausted")
    assert _events(conn, rows[0][0]) == ["queued", "sending", "queued", "sending", "queued", "sending", "failed"]
    assert conn.execute("SELECT queued_count FROM fairlane.queues").fetchone()[0] == 0


def test_throttles_use_no_attempts_and_back_off_the_rate(conn, one_queue):
    backlog(conn, "t", "+15550000001", 2000)
    clock = Clock(conn, one_queue)
    clock.run(2)
    rows = _claim(conn, clock, 10)
    _complete(conn, clock, rows, "throttled", delay=1)
    assert {_message(conn, r[0])[:2] for r in rows} == {("queued", 0)}
    factor = conn.execute("SELECT fairlane.throttle_v2(%s, %s)", (one_queue, clock.at(clock.now))).fetchone()[0]
    assert factor == 0.5
    # a second throttle within the same second does not halve again
    assert (
        conn.execute("SELECT fairlane.throttle_v2(%s, %s)", (one_queue, clock.at(clock.now + 0.5))).fetchone()[0] == 0.5
    )
    start = clock.now
    clock.run(1)
    throttled = sum(clock.segments(start + 0.05, start + 1).values())
    assert throttled <= 55  # about half the quota
    clock.run(8)  # recovery: +10% of the quota per second after a quiet second
    recovered = sum(clock.segments(clock.now - 1, clock.now).values())
    assert recovered == pytest.approx(100, abs=2)
    load = conn.execute("SELECT effective_rate FROM fairlane.destination_load WHERE destination = 'X'").fetchone()[0]
    assert float(load) == 100


def test_release_returns_messages_at_once(conn, one_queue):
    backlog(conn, "t", "+15550000001", 5)
    clock = Clock(conn, one_queue)
    rows = _claim(conn, clock, 5)
    _complete(conn, clock, rows, "release")
    assert conn.execute("SELECT queued_count FROM fairlane.queues").fetchone()[0] == 5
    assert [r[0] for r in _claim(conn, clock, 5)] == [r[0] for r in rows]  # same FIFO order, attempts unused
    assert {_message(conn, r[0])[1] for r in rows} == {0}


def test_expired_lease_is_rescued(conn, one_queue):
    backlog(conn, "t", "+15550000001", 3)
    clock = Clock(conn, one_queue)
    rows = _claim(conn, clock, 3)
    assert conn.execute("SELECT fairlane.rescue_v1(5, %s)", (clock.at(clock.now + 29),)).fetchone()[0] == 0
    assert conn.execute("SELECT fairlane.rescue_v1(5, %s)", (clock.at(clock.now + 31),)).fetchone()[0] == 3
    assert {_message(conn, r[0])[:2] for r in rows} == {("queued", 1)}
    # the dead dispatcher's late answer is ignored; the new claim's is not
    assert _complete(conn, clock, rows, "sent") == 0
    clock.now += 31
    again = _claim(conn, clock, 3)
    assert [r[0] for r in again] == [r[0] for r in rows] and again[0][1] != rows[0][1]
    assert _complete(conn, clock, again, "sent") == 3


def test_scheduled_messages_are_promoted(conn, one_queue):
    send_at = conn.execute("SELECT now() + interval '1 hour'").fetchone()[0]
    conn.execute(
        "INSERT INTO fairlane.outbox (tenant, recipient, body, send_at, validity_seconds) "
        "VALUES ('t', '+15551234567', 'later', %s, 60), ('t', '+15551234567', 'too late', %s, 1)",
        (send_at, send_at),
    )
    assert conn.execute("SELECT fairlane.promote_v1(%s)", (send_at - dt.timedelta(seconds=1),)).fetchone()[0] == 0
    assert conn.execute("SELECT fairlane.promote_v1(%s)", (send_at + dt.timedelta(seconds=2),)).fetchone()[0] == 2
    statuses = conn.execute("SELECT body, status FROM fairlane.messages ORDER BY id").fetchall()
    assert statuses == [("later", "queued"), ("too late", "expired")]
    assert conn.execute("SELECT queued_count FROM fairlane.queues").fetchone()[0] == 1


def test_an_answer_racing_a_rescue_changes_nothing(conn, dsn, one_queue):
    import threading

    import psycopg

    backlog(conn, "t", "+15550000001", 1)
    clock = Clock(conn, one_queue)
    rows = _claim(conn, clock, 1)
    results = []
    with psycopg.connect(dsn) as rescuer:
        rescuer.execute("SELECT fairlane.rescue_v1(5, %s)", (clock.at(clock.now + 31),))  # holds the row
        with psycopg.connect(dsn, autocommit=True) as answerer:
            late = threading.Thread(
                target=lambda: results.append(
                    answerer.execute(
                        "SELECT fairlane.complete_v1(%s, %s, '{sent}', '{p}', '{NULL}', '{NULL}', '{NULL}', 5, %s)",
                        (rows[0][1], [rows[0][0]], clock.at(clock.now)),
                    ).fetchone()[0]
                )
            )
            late.start()
            wait_for_lock(conn)
            rescuer.commit()
            late.join()
    assert results == [0]
    assert _message(conn, rows[0][0])[:2] == ("queued", 1)
    assert conn.execute("SELECT queued_count FROM fairlane.queues").fetchone()[0] == 1


def wait_for_lock(conn):
    from tests.integration.processes import wait_until

    wait_until(
        lambda: conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        ).fetchone()[0],
        message="the late answer waiting for the rescue's lock",
    )


def test_unknown_outcomes_are_refused(conn, one_queue):
    import psycopg

    backlog(conn, "t", "+15550000001", 1)
    clock = Clock(conn, one_queue)
    rows = _claim(conn, clock, 1)
    with pytest.raises(psycopg.Error) as raised:
        _complete(conn, clock, rows, "delivered-ish")
    assert raised.value.sqlstate == "FL400"
    assert _message(conn, rows[0][0])[0] == "sending"  # untouched, still leased
