"""fairlane.queue_scores agrees with the claim (docs/decisions/0020): in every case the claim passes over a queue
or clamps its virtual time, the view's rank 1 is the queue the next claim of one message takes, read in one
transaction (the view's now() is the claim's at_time). Quota windows and levels are shown alongside."""

import pytest

from tests.integration.claiming import backlog, setup

SENDERS = {"t1": "+15550000001", "t2": "+15550000002", "t3": "+15550000003"}


def _destination(conn, **later):
    """Three tenants' queues with 20 messages each; `later` (allocations, sender_windows) configured after the
    backlog, which admission would refuse (no portion, a window too small for it)."""

    def configure(**fields):
        return setup(
            conn,
            rate=100,
            tenant_sets=[("s1", 1), ("s2", 1)],
            tenants=[
                ("t1", "s1", 1, [(SENDERS["t1"], None)]),
                ("t2", "s2", 1, [(SENDERS["t2"], None)]),
                ("t3", "s2", 1, [(SENDERS["t3"], None)]),
            ],
            **fields,
        )

    destination = configure()
    for tenant, sender in SENDERS.items():
        backlog(conn, tenant, sender, 20)
    if later:
        configure(**later)
    # a first claim computes the portions; then the cases set the queues' virtual times
    conn.execute("SELECT fairlane.claim_v4(%s, 3, 30)", (destination,))
    return destination


def _vtimes(conn, **vtimes):
    for tenant, vtime in vtimes.items():
        conn.execute(
            "UPDATE fairlane.queues q SET vtime = %s FROM fairlane.tenants t WHERE t.id = q.tenant_id AND t.name = %s",
            (vtime, tenant),
        )


def _rank_one_and_claim(conn, destination):
    """In one transaction: the view's rank-1 tenant (eligible) and the tenant of the message a claim of one takes
    at the same instant (None when it takes none)."""
    with conn.transaction(force_rollback=True):
        top = conn.execute(
            "SELECT tenant FROM fairlane.queue_scores WHERE destination = 'X' AND rank = 1 AND eligible"
        ).fetchall()
        taken = conn.execute(
            "SELECT m.tenant FROM fairlane.claim_v4(%s, 1, 30, now()) c, unnest(c.messages) m", (destination,)
        ).fetchall()
    return [r[0] for r in top], [r[0] for r in taken]


def test_a_queue_waiting_out_a_retry_delay_is_not_ranked_first(conn):
    destination = _destination(conn)
    _vtimes(conn, t1=0.0, t2=5.0, t3=6.0)
    # t1's ready messages wait out a retry delay
    conn.execute(
        "UPDATE fairlane.messages_live m SET available_at = now() + interval '1 hour' FROM fairlane.tenants t "
        "WHERE t.id = m.tenant_id AND t.name = 't1' AND m.status = 'queued'"
    )
    assert _rank_one_and_claim(conn, destination) == (["t2"], ["t2"])
    assert conn.execute("SELECT waiting_for FROM fairlane.queue_scores WHERE tenant = 't1'").fetchone() == (
        "retry delay",
    )


def test_a_queue_with_no_portion_is_not_ranked_first(conn):
    # set s1 takes the whole rate: s2's tenants get portion 0
    destination = _destination(conn, allocations=[{"tenant_set": "s1", "rate": 100}])
    _vtimes(conn, t1=5.0, t2=0.0, t3=0.5)
    assert conn.execute("SELECT portion FROM fairlane.queue_scores WHERE tenant = 't2'").fetchone()[0] == 0
    assert _rank_one_and_claim(conn, destination) == (["t1"], ["t1"])


@pytest.mark.parametrize("batch", [1, 10])
def test_clamped_virtual_times_rank_as_the_claim_orders_them(conn, batch):
    destination = _destination(conn)
    conn.execute("UPDATE fairlane.destination_slices SET virtual_time = 100 WHERE slice = 0")
    # both far behind (clamped to 99 alike): the lower unclamped virtual time first, whatever the heads' ages
    _vtimes(conn, t1=50.0, t2=10.0, t3=120.0)
    conn.execute(
        "UPDATE fairlane.messages_live m SET created_at = m.created_at + interval '1 minute' "
        "FROM fairlane.tenants t WHERE t.id = m.tenant_id AND t.name = 't2'"
    )
    assert _rank_one_and_claim(conn, destination) == (["t2"], ["t2"])
    scores = dict(conn.execute("SELECT tenant, score::float8 FROM fairlane.queue_scores").fetchall())
    assert scores == {"t1": 1, "t2": 1, "t3": -20}  # credit bounded to a second, as the claim counts it
    with conn.transaction(force_rollback=True):
        taken = conn.execute(
            "SELECT m.tenant FROM fairlane.claim_v4(%s, %s, 30, now()) c, unnest(c.messages) m ORDER BY m.message_id",
            (destination, batch),
        ).fetchall()
    assert taken[0][0] in ("t1", "t2") and "t3" not in [t for (t,) in taken]


def test_slices_beyond_the_ones_in_use_do_not_count(conn):
    destination = _destination(conn)  # burst 10 at 100/s: one slice in use
    assert conn.execute("SELECT fairlane.slice_count_v1(100, 10)").fetchone()[0] == 1
    conn.execute("UPDATE fairlane.destination_slices SET virtual_time = CASE WHEN slice = 0 THEN 10 ELSE 500 END")
    _vtimes(conn, t1=9.5, t2=9.8, t3=9.9)
    scores = dict(conn.execute("SELECT tenant, score::float8 FROM fairlane.queue_scores").fetchall())
    assert scores == {"t1": pytest.approx(0.5), "t2": pytest.approx(0.2), "t3": pytest.approx(0.1)}
    assert _rank_one_and_claim(conn, destination) == (["t1"], ["t1"])


def test_ties_go_to_the_lower_queue_id(conn):
    destination = _destination(conn)
    _vtimes(conn, t1=3.0, t2=3.0, t3=3.0)
    conn.execute("UPDATE fairlane.destination_slices SET virtual_time = 3")
    ids = [r[0] for r in conn.execute("SELECT queue_id FROM fairlane.queue_scores ORDER BY rank").fetchall()]
    assert ids == sorted(ids)
    assert _rank_one_and_claim(conn, destination) == (["t1"], ["t1"])


def test_a_spent_sender_window_and_a_spent_destination_window(conn):
    destination = _destination(conn, sender_windows={SENDERS["t1"]: {"per_hour": 1, "window": "sliding"}})
    _vtimes(conn, t1=0.0, t2=1.0, t3=2.0)
    # t1's sender sent its one segment an hour's worth: spent
    row = conn.execute(
        "SELECT eligible, waiting_for, binding_limit, limit_remaining, limit_resets_at IS NOT NULL "
        "FROM fairlane.queue_scores WHERE tenant = 't1'"
    ).fetchone()
    assert row == (False, "sender per_hour quota spent", "sender per_hour", 0, True)
    assert _rank_one_and_claim(conn, destination) == (["t2"], ["t2"])
    # a destination window spent: no queue is eligible and the claim takes nothing
    conn.execute("UPDATE fairlane.destinations SET per_minute = 2, window_kind = 'sliding' WHERE code = 'X'")
    conn.execute("SELECT fairlane.claim_v4(%s, 10, 30)", (destination,))
    assert _rank_one_and_claim(conn, destination) == ([], [])
    assert {r[0] for r in conn.execute("SELECT waiting_for FROM fairlane.queue_scores")} == {
        "destination per_minute quota spent"
    }
    load = conn.execute("SELECT windows FROM fairlane.destination_load WHERE destination = 'X'").fetchone()[0]
    assert [(w["window"], w["quota"], w["used"], w["remaining"]) for w in load] == [("per_minute", 2, 2, 0)]
