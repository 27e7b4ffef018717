"""The claim: fair shares (SPEC §2) and pacing (SPEC §3), driven with an injected clock."""

import pytest

from tests.fairness import Queue, fairness_error, ideal_rates
from tests.integration.claiming import Clock, backlog, setup

RATE = 100


def _check(clock, ideal, start=1.0, seconds=10.0, goal=0.05):
    measured = clock.segments(start, start + seconds)
    error = fairness_error(measured, ideal)
    assert error <= goal, (error, measured, ideal)
    return measured


def test_three_sets_weighted_1_2_3(conn):
    destination = setup(
        conn,
        rate=RATE,
        burst=10,
        tenant_sets=[("s1", 1), ("s2", 2), ("s3", 3)],
        tenants=[
            ("t1", "s1", 1, [("+15550000001", None)]),
            ("t2", "s2", 1, [("+15550000002", None)]),
            ("t3", "s3", 1, [("+15550000003", None)]),
        ],
    )
    for i in (1, 2, 3):
        backlog(conn, f"t{i}", f"+1555000000{i}", 1500)
    clock = Clock(conn, destination)
    clock.run(11)
    queues = [Queue(f"t{i}/+1555000000{i}", f"t{i}", f"s{i}") for i in (1, 2, 3)]
    ideal = ideal_rates(RATE, queues, {"s1": 1, "s2": 2, "s3": 3})
    measured = _check(clock, ideal)
    # pacing: never more than rate + burst in any second, and the quota used to within 1% over 10 s
    assert clock.max_in_any_second(0, 11) <= RATE + 10
    assert abs(sum(measured.values()) - RATE * 10) <= RATE * 10 * 0.01


def test_tenant_weights_inside_a_set(conn):
    destination = setup(
        conn,
        rate=RATE,
        tenant_sets=[("a", 1), ("b", 1)],
        tenants=[
            ("light", "a", 1, [("+15550000001", None)]),
            ("heavy", "a", 3, [("+15550000002", None)]),
            ("solo", "b", 1, [("+15550000003", None)]),
        ],
    )
    for tenant, sender in (("light", "+15550000001"), ("heavy", "+15550000002"), ("solo", "+15550000003")):
        backlog(conn, tenant, sender, 1200)
    clock = Clock(conn, destination)
    clock.run(11)
    queues = [
        Queue("light/+15550000001", "light", "a"),
        Queue("heavy/+15550000002", "heavy", "a"),
        Queue("solo/+15550000003", "solo", "b"),
    ]
    measured = _check(clock, ideal_rates(RATE, queues, {"a": 1, "b": 1}, {"light": 1, "heavy": 3}))
    assert measured["solo/+15550000003"] == pytest.approx(500, rel=0.05)


def test_more_senders_buy_no_more_capacity(conn):
    five = [(f"+1555000010{i}", None) for i in range(5)]
    destination = setup(
        conn,
        rate=RATE,
        tenant_sets=[("s", 1)],
        tenants=[("many", "s", 1, five), ("one", "s", 1, [("+15550000200", None)])],
    )
    for address, _ in five:
        backlog(conn, "many", address, 300)
    backlog(conn, "one", "+15550000200", 1200)
    clock = Clock(conn, destination)
    clock.run(11)
    queues = [Queue(f"many/{a}", "many", "s") for a, _ in five] + [Queue("one/+15550000200", "one", "s")]
    measured = _check(clock, ideal_rates(RATE, queues, {"s": 1}))
    many = sum(v for k, v in measured.items() if k.startswith("many/"))
    assert many == pytest.approx(measured["one/+15550000200"], rel=0.05)


def test_sender_cap_surplus_is_redistributed(conn):
    destination = setup(
        conn,
        rate=RATE,
        tenant_sets=[("s", 1)],
        tenants=[("capped", "s", 1, [("+15550000001", 10)]), ("free", "s", 1, [("+15550000002", None)])],
    )
    backlog(conn, "capped", "+15550000001", 400)
    backlog(conn, "free", "+15550000002", 1500)
    clock = Clock(conn, destination)
    clock.run(11)
    queues = [Queue("capped/+15550000001", "capped", "s", cap=10), Queue("free/+15550000002", "free", "s")]
    measured = _check(clock, ideal_rates(RATE, queues, {"s": 1}))
    assert measured["capped/+15550000001"] <= 10 * 10 + 1
    assert sum(measured.values()) == pytest.approx(RATE * 10, rel=0.01)  # work-conserving


def test_absolute_set_portion(conn):
    destination = setup(
        conn,
        rate=RATE,
        tenant_sets=[("fixed", 1), ("rest", 1)],
        tenants=[("f", "fixed", 1, [("+15550000001", None)]), ("r", "rest", 1, [("+15550000002", None)])],
        allocations=[{"tenant_set": "fixed", "rate": 40}],
    )
    backlog(conn, "f", "+15550000001", 1200)
    backlog(conn, "r", "+15550000002", 1200)
    clock = Clock(conn, destination)
    clock.run(11)
    queues = [Queue("f/+15550000001", "f", "fixed"), Queue("r/+15550000002", "r", "rest")]
    measured = _check(clock, ideal_rates(RATE, queues, {"rest": 1}, set_rates={"fixed": 40}))
    assert measured["f/+15550000001"] == pytest.approx(400, rel=0.05)


def test_idle_tenant_share_is_absorbed_and_regained(conn):
    destination = setup(
        conn,
        rate=RATE,
        tenant_sets=[("s", 1)],
        tenants=[(f"t{i}", "s", 1, [(f"+1555000000{i}", None)]) for i in (1, 2, 3)],
    )
    backlog(conn, "t1", "+15550000001", 3000)
    backlog(conn, "t2", "+15550000002", 3000)
    backlog(conn, "t3", "+15550000003", 150)  # t3 runs dry after ~4.5 s
    clock = Clock(conn, destination)
    clock.run(6)
    queues = [Queue(f"t{i}/+1555000000{i}", f"t{i}", "s") for i in (1, 2, 3)]
    # while t3 is idle, t1 and t2 absorb its share: half each, the destination still fully used
    idle = clock.segments(5, 6)
    assert set(idle) == {"t1/+15550000001", "t2/+15550000002"}
    assert sum(idle.values()) == pytest.approx(RATE, rel=0.02)
    clock.run(4)  # t3 idle for a while: it must bank no credit
    backlog(conn, "t3", "+15550000003", 3000)
    returned_at = clock.now
    clock.run(11)
    # within a second of returning it has its third again, without a burst above it
    first_second = clock.segments(returned_at, returned_at + 1)
    assert first_second["t3/+15550000003"] == pytest.approx(RATE / 3, abs=RATE * 0.05)
    _check(clock, ideal_rates(RATE, queues, {"s": 1}), start=returned_at + 1)


def test_tenant_joining_mid_run(conn):
    destination = setup(
        conn,
        rate=RATE,
        tenant_sets=[("a", 1), ("b", 2)],
        tenants=[("early", "a", 1, [("+15550000001", None)]), ("late", "b", 1, [("+15550000002", None)])],
    )
    backlog(conn, "early", "+15550000001", 3000)
    clock = Clock(conn, destination)
    clock.run(3)
    assert clock.segments(1, 3) == {"early/+15550000001": 2 * RATE}
    backlog(conn, "late", "+15550000002", 2000)
    joined = clock.now
    clock.run(11)
    queues = [Queue("early/+15550000001", "early", "a"), Queue("late/+15550000002", "late", "b")]
    _check(clock, ideal_rates(RATE, queues, {"a": 1, "b": 2}), start=joined)


def test_next_claim_takes_the_queue_ranked_first(conn):
    destination = setup(
        conn,
        rate=RATE,
        tenant_sets=[("s1", 1), ("s2", 3)],
        tenants=[("t1", "s1", 1, [("+15550000001", None)]), ("t2", "s2", 1, [("+15550000002", None)])],
    )
    backlog(conn, "t1", "+15550000001", 500)
    backlog(conn, "t2", "+15550000002", 500)
    clock = Clock(conn, destination, max_messages=1)
    for _ in range(40):
        top = conn.execute(
            "SELECT tenant || '/' || sender FROM fairlane.queue_scores WHERE destination = 'X' AND rank = 1"
        ).fetchall()
        rows = clock.claim()
        assert len(top) == 1 and f"{rows[0][2]}/{rows[0][3]}" == top[0][0]
        clock.now += 0.05
    scores = conn.execute(
        "SELECT tenant, portion, score, rank FROM fairlane.queue_scores WHERE destination = 'X' ORDER BY rank"
    ).fetchall()
    assert {r[0]: float(r[1]) for r in scores} == {"t1": 25.0, "t2": 75.0}


def test_expired_messages_are_never_sent(conn):
    # admitted while alone; then a heavier tenant joins and the queue drains slower than its validity
    destination = setup(
        conn,
        rate=10,
        tenant_sets=[("a", 1), ("b", 9)],
        tenants=[("t", "a", 1, [("+15550000001", None)]), ("big", "b", 1, [("+15550000002", None)])],
    )
    conn.execute(
        "INSERT INTO fairlane.outbox (tenant, recipient, body, validity_seconds) "
        "SELECT 't', '+15551234567', 'short-lived ' || i, 30 FROM generate_series(1, 250) i"
    )
    backlog(conn, "big", "+15550000002", 3000)
    clock = Clock(conn, destination)
    clock.run(40)
    statuses = dict(
        conn.execute(
            "SELECT status, count(*) FROM fairlane.messages WHERE tenant_id = "
            "(SELECT id FROM fairlane.tenants WHERE name = 't') GROUP BY status"
        ).fetchall()
    )
    assert statuses["sent"] + statuses["expired"] == 250 and statuses["expired"] > 100
    sent_late = conn.execute(
        "SELECT count(*) FROM fairlane.message_events e JOIN fairlane.messages m ON m.id = e.message_id "
        "WHERE e.status = 'sending' AND e.at >= m.expires_at"
    ).fetchone()[0]
    assert sent_late == 0
    queue = conn.execute(
        "SELECT queued_count FROM fairlane.queues q JOIN fairlane.tenants t ON t.id = q.tenant_id WHERE t.name = 't'"
    ).fetchone()[0]
    assert queue == 0


def test_multi_segment_messages_are_paced_in_segments(conn):
    destination = setup(
        conn, rate=20, burst=3, tenant_sets=[("s", 1)], tenants=[("t", "s", 1, [("+15550000001", None)])]
    )
    backlog(conn, "t", "+15550000001", 200, body="y" * 300)  # 2 segments each
    clock = Clock(conn, destination)
    clock.run(11)
    assert sum(clock.segments(1, 11).values()) == pytest.approx(200, abs=3)
    assert clock.max_in_any_second(0, 11) <= 20 + 3 + 1  # a message may start on the last token


def test_a_queue_waiting_out_a_retry_does_not_hold_up_the_others(conn):
    destination = setup(
        conn,
        rate=10,
        tenant_sets=[("s", 1)],
        tenants=[("a", "s", 1, [("+15550000001", None)]), ("b", "s", 1, [("+15550000002", None)])],
    )
    backlog(conn, "a", "+15550000001", 1)
    backlog(conn, "b", "+15550000002", 500)
    clock = Clock(conn, destination, max_messages=1)
    rows = conn.execute(
        "SELECT message_id, claim_id, tenant FROM fairlane.claim_v2(%s, 10, 30, %s)", (destination, clock.at(0))
    ).fetchall()
    for message_id, claim_id, tenant in rows:
        outcome, delay = ("retry", 60) if tenant == "a" else ("sent", None)
        conn.execute(
            "SELECT fairlane.complete_v1(%s, %s, %s, '{NULL}', '{NULL}', '{NULL}', %s, 5, %s)",
            (claim_id, [message_id], [outcome], [delay], clock.at(0)),
        )
    clock.now = 1
    clock.run(10)
    # b had the destination to itself while a waited: about the whole quota
    assert clock.segments(1, 11) == {"b/+15550000002": pytest.approx(100, abs=10)}  # plus the full bucket


def test_absolute_portions_taking_the_whole_quota_do_not_break_claims(conn):
    destination = setup(
        conn,
        rate=10,
        tenant_sets=[("fixed", 1), ("w", 1)],
        tenants=[("f", "fixed", 1, [("+15550000001", None)]), ("x", "w", 1, [("+15550000002", None)])],
        allocations=[{"tenant_set": "fixed", "rate": 10}],
    )
    backlog(conn, "x", "+15550000002", 100)
    backlog(conn, "f", "+15550000001", 100)
    clock = Clock(conn, destination)
    clock.run(5)
    # the absolute set takes the quota; the weighted set's zero portion is never divided by
    assert clock.segments(1, 5) == {"f/+15550000001": pytest.approx(40, abs=2)}
