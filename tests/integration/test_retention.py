"""Built to live (docs/decisions/0014): live and finished apart, retention by whole partitions, usage that
outlives it, the expiry sweeper. SQL functions driven with an injected clock; a claim loop on its own
connection while partitions come and go."""

import asyncio
import datetime as dt
import time

import asyncpg
import psycopg
import pytest

from tests.integration.claiming import Clock, backlog, setup
from tests.integration.fixtures import apply_config

SENDER = "+15550000001"


@pytest.fixture
def destination(conn):
    """A destination, and no partitions of finished messages yet (the template's were made when it was
    built): each test makes its own, for its retention and its clock."""
    for (lower,) in conn.execute("SELECT lower FROM fairlane.history_partitions").fetchall():
        suffix = lower.astimezone(dt.UTC).strftime("%Y%m%d_%H%M")
        conn.execute(f"DROP TABLE fairlane.messages_finished_p{suffix}, fairlane.message_events_finished_p{suffix}")
    conn.execute("DELETE FROM fairlane.history_partitions")
    return setup(conn, rate=1000, burst=1000, tenant_sets=[("s", 1)], tenants=[("t", "s", 1, [(SENDER, None)])])


def _catch_up(conn, at):
    """Partition upkeep at `at` until there is nothing left to make or drop."""
    while conn.execute("SELECT fairlane.make_history_partition_v1(%s)", (at,)).fetchone()[0]:
        pass
    while conn.execute("SELECT fairlane.drop_history_partition_v1(%s)", (at,)).fetchone()[0]:
        pass


def _complete(conn, clock, rows, outcomes, at):
    n = len(rows)
    conn.execute(
        "SELECT fairlane.complete_v1(%s, %s, %s, %s, %s, %s, %s, 5, %s)",
        (rows[0][1], [r[0] for r in rows], outcomes, [f"p-{r[0]}" for r in rows], [None] * n, [None] * n,
         [None] * n, at),
    )  # fmt: skip


def _statuses(conn):
    return dict(conn.execute("SELECT id, status FROM fairlane.messages"))


def _usage(conn):
    return dict(conn.execute("SELECT status, sum(messages)::int FROM fairlane.usage_daily GROUP BY status"))


def test_retention_drops_finished_messages_and_events_and_keeps_the_rest(conn, destination):
    conn.execute("UPDATE fairlane.settings SET retention_seconds = 600")  # partitions of a minute
    clock = Clock(conn, destination)
    start = clock.at(0)
    _catch_up(conn, start)
    backlog(conn, "t", SENDER, 6)
    early = conn.execute(
        "SELECT message_id, claim_id FROM fairlane.claim_v2(%s, 4, 30, %s)", (destination, start)
    ).fetchall()
    _complete(conn, clock, early, ["sent", "sent", "failed", "sent"], start)
    conn.execute("SELECT fairlane.receipt_v1('g', %s, NULL, 'delivered', NULL)", (f"p-{early[0][0]}",))
    # later, one more is sent (inside the retention when the early ones are past it), one left sending
    late_at = start + dt.timedelta(seconds=300)
    _catch_up(conn, late_at)
    late = conn.execute(
        "SELECT message_id, claim_id FROM fairlane.claim_v2(%s, 2, 30, %s)", (destination, late_at)
    ).fetchall()
    _complete(conn, clock, late[:1], ["sent"], late_at)
    scheduled = conn.execute(
        "SELECT fairlane.submit(tenant => 't', recipient => '+15559999999', body => 'later', send_at => %s)",
        (dt.datetime.now(dt.UTC) + dt.timedelta(days=30),),
    ).fetchone()[0]
    conn.execute("SELECT fairlane.submit(tenant => 't', recipient => '+15559999998', body => 'queued')")
    before = _statuses(conn)
    usage = _usage(conn)
    assert usage == {"delivered": 1, "sent": 3, "failed": 1}
    events_before = conn.execute("SELECT count(*) FROM fairlane.message_events").fetchone()[0]

    _catch_up(conn, late_at + dt.timedelta(seconds=500))

    after = _statuses(conn)
    gone = {r[0] for r in early}
    assert set(before) - set(after) == gone  # the early finished ones are gone ...
    assert after == {k: v for k, v in before.items() if k not in gone}  # ... the rest untouched
    assert after[late[0][0]] == "sent" and after[late[1][0]] == "sending" and after[scheduled] == "scheduled"
    assert (
        conn.execute(
            "SELECT count(*) FROM fairlane.message_events WHERE message_id = ANY(%s)", (list(gone),)
        ).fetchone()[0]
        == 0
    )
    assert conn.execute("SELECT count(*) FROM fairlane.message_events").fetchone()[0] < events_before
    # usage survives the pruning, exactly
    assert _usage(conn) == usage
    # a receipt for the retained sent message still lands; one for a pruned message finds nothing
    receipt = "SELECT fairlane.receipt_v1('g', %s, NULL, %s, NULL)"
    assert conn.execute(receipt, (f"p-{late[0][0]}", "undelivered")).fetchone()[0] == "undelivered"
    with pytest.raises(psycopg.Error) as missing:
        conn.execute(receipt, (f"p-{early[1][0]}", "delivered"))
    assert missing.value.sqlstate == "FL404"
    assert _usage(conn) == {"delivered": 1, "sent": 2, "failed": 1, "undelivered": 1}


def test_partitions_are_made_ahead_and_the_default_stays_empty(conn, destination):
    conn.execute("UPDATE fairlane.settings SET retention_seconds = 3600")  # partitions of 15 minutes
    at = dt.datetime.now(dt.UTC)
    _catch_up(conn, at)
    newest = conn.execute("SELECT max(upper) FROM fairlane.history_partitions").fetchone()[0]
    assert newest >= at + dt.timedelta(minutes=30)
    backlog(conn, "t", SENDER, 3)
    rows = conn.execute(
        "SELECT message_id, claim_id FROM fairlane.claim_v2(%s, 3, 30, %s)", (destination, at)
    ).fetchall()
    _complete(conn, Clock(conn, destination), rows, ["sent"] * 3, at)
    assert conn.execute("SELECT count(*) FROM fairlane.messages_finished_default").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM fairlane.message_events_finished_default").fetchone()[0] == 0
    # a shorter retention: the empty partitions ahead go, and once the partition of now ends the next ones
    # are a minute wide
    conn.execute("UPDATE fairlane.settings SET retention_seconds = 600")
    _catch_up(conn, at)
    current_end = conn.execute("SELECT max(upper) FROM fairlane.history_partitions").fetchone()[0]
    assert current_end <= at + dt.timedelta(minutes=15)
    later = current_end + dt.timedelta(seconds=1)
    _catch_up(conn, later)
    widths = conn.execute(
        "SELECT extract(epoch FROM upper - lower)::int FROM fairlane.history_partitions WHERE lower >= %s",
        (current_end,),
    ).fetchall()
    assert len(widths) >= 2 and {w for (w,) in widths} == {60}


def test_rows_finished_where_no_partition_was_made_move_into_one_when_it_is(conn, destination):
    """The maintenance leader was away: messages finished into the default partition; the partition made for
    their time takes them in."""
    far = dt.datetime.now(dt.UTC) + dt.timedelta(hours=5)
    backlog(conn, "t", SENDER, 2)
    rows = conn.execute(
        "SELECT message_id, claim_id FROM fairlane.claim_v2(%s, 2, 30, %s)", (destination, far)
    ).fetchall()
    _complete(conn, Clock(conn, destination), rows, ["sent", "failed"], far)
    assert conn.execute("SELECT count(*) FROM fairlane.messages_finished_default").fetchone()[0] == 2
    _catch_up(conn, far)
    assert conn.execute("SELECT count(*) FROM fairlane.messages_finished_default").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM fairlane.message_events_finished_default").fetchone()[0] == 0
    assert sorted(_statuses(conn).values()) == ["failed", "sent"]


def test_the_sweeper_expires_messages_nobody_claims(conn, destination):
    """A queue whose destination no dispatcher serves: its queued and scheduled messages past their validity
    expire, with events, callbacks, counters, usage and the admission room."""
    apply_config(conn, {"tenants": [{"name": "t", "tenant_set": "s", "status_callback": "https://x.test/hook"}]})
    ids = [
        conn.execute(
            "SELECT fairlane.submit(tenant => 't', recipient => '+15551234567', body => %s, validity_seconds => 60)",
            (f"m{i}",),
        ).fetchone()[0]
        for i in range(3)
    ]
    scheduled = conn.execute(
        "SELECT fairlane.submit(tenant => 't', recipient => '+15551234567', body => 's', send_at => now() + interval "
        "'1 hour', validity_seconds => 60)"
    ).fetchone()[0]
    at = dt.datetime.now(dt.UTC)
    assert conn.execute("SELECT fairlane.expire_v1(%s)", (at,)).fetchone()[0] == 0  # not yet
    assert conn.execute("SELECT fairlane.expire_v1(%s)", (at + dt.timedelta(seconds=61),)).fetchone()[0] == 3
    assert conn.execute("SELECT fairlane.expire_v1(%s)", (at + dt.timedelta(hours=2),)).fetchone()[0] == 1
    statuses = _statuses(conn)
    assert [statuses[i] for i in [*ids, scheduled]] == ["expired"] * 4
    assert conn.execute("SELECT queued_count, queued_segments FROM fairlane.queues").fetchone() == (0, 0)
    events = conn.execute(
        "SELECT status, count(*) FROM fairlane.message_events WHERE message_id = ANY(%s) GROUP BY status",
        (ids,),
    ).fetchall()
    assert dict(events) == {"queued": 3, "expired": 3}
    payloads = conn.execute(
        "SELECT payload::jsonb FROM fairlane.callbacks WHERE payload::jsonb -> 'data' ->> 'status' = 'expired'"
    ).fetchall()
    assert len(payloads) == 4 and all(p[0]["data"]["sequence"] == 2 for p in payloads)
    assert _usage(conn) == {"expired": 4}


async def test_a_claim_loop_keeps_going_while_partitions_are_made_and_dropped(conn, dsn, destination):
    """Partition upkeep runs beside a claim-and-complete loop on another connection: the loop never waits
    for it (claims touch messages_live only; upkeep gives up on a busy lock after 100 ms)."""
    conn.execute("UPDATE fairlane.settings SET retention_seconds = 600")
    backlog(conn, "t", SENDER, 3000)
    claimer = await asyncpg.connect(dsn)
    keeper = await asyncpg.connect(dsn)
    slowest = 0.0
    claimed = 0
    stop = asyncio.Event()

    async def claim_loop():
        nonlocal slowest, claimed
        while not stop.is_set():
            started = time.perf_counter()
            async with claimer.transaction():
                rows = await claimer.fetch(
                    "SELECT message_id, claim_id FROM fairlane.claim_v2($1, 10, 30)", destination
                )
                if rows:
                    n = len(rows)
                    await claimer.execute(
                        "SELECT fairlane.complete_v1($1, $2, $3, $4, $5, $6, $7, 5)",
                        rows[0]["claim_id"], [r["message_id"] for r in rows], ["sent"] * n, [None] * n, [None] * n,
                        [None] * n, [None] * n,
                    )  # fmt: skip
            slowest = max(slowest, time.perf_counter() - started)
            claimed += len(rows)
            if not rows:
                return

    made = dropped = 0
    loop = asyncio.create_task(claim_loop())
    try:
        # twenty minutes of upkeep, ten seconds at a time: partitions made ahead, the old ones dropped behind
        at = dt.datetime.now(dt.UTC)
        for step in range(120):
            when = at + dt.timedelta(seconds=10 * step)
            made += await keeper.fetchval("SELECT fairlane.make_history_partition_v1($1)::int", when)
            dropped += await keeper.fetchval("SELECT fairlane.drop_history_partition_v1($1)::int", when)
            await asyncio.sleep(0)
    finally:
        stop.set()
        await loop
        await claimer.close()
        await keeper.close()
    assert made > 0 and dropped > 0 and claimed > 0
    assert slowest < 5.0  # a generous bound: a claim that waited on a lock would wait for good
