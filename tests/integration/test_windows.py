"""Quota windows in the claim (docs/decisions/0020), driven by an injected clock: a daily cap stops claims
exactly at the cap and they resume at the reset, local midnight of the reset time zone; a sliding window never
holds more than its quota; a sender's spent cap gives its portion to the others within a second; admission
refuses what a spent cap would hold past its validity, with the reset as Retry-After; configuration checks."""

import datetime as dt

import psycopg
import pytest

from tests.fairness import Queue, fairness_error, ideal_rates
from tests.integration.api import start_api
from tests.integration.claiming import Clock, backlog, setup
from tests.integration.fixtures import apply_config, error_detail


def zone_with_midnight_ahead(now: dt.datetime, hours: int = 0) -> tuple[str, dt.datetime]:
    """A fixed-offset time zone whose next local midnight is the UTC hour boundary `hours` after the next one
    that is at least a minute away, and that midnight."""
    boundary = now.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1 + hours)
    if boundary - now < dt.timedelta(minutes=1):
        boundary += dt.timedelta(hours=1)
    offset = (24 - boundary.hour) % 24  # local time at the boundary is midnight
    if offset > 14:
        offset -= 24
    zone = "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"  # Etc/GMT-9 is UTC+9
    return zone, boundary


def _claim(conn, destination, at, max_messages=100):
    """claim_v4 at `at`: (tenant/sender of each message, ready_at); the messages recorded as sent."""
    messages, ready_at = conn.execute(
        "SELECT messages, ready_at FROM fairlane.claim_v4(%s, %s, 30, %s)", (destination, max_messages, at)
    ).fetchone()
    rows = conn.execute(
        "SELECT m.message_id, m.claim_id, m.tenant || '/' || m.sender FROM unnest(%s::fairlane.claimed_message_v1[]) m",
        (messages,),
    ).fetchall()
    if rows:
        ids = [r[0] for r in rows]
        n = len(ids)
        conn.execute(
            "SELECT fairlane.complete_v1(%s, %s, %s, %s, %s, %s, %s, 5, %s)",
            (rows[0][1], ids, ["sent"] * n, [None] * n, [None] * n, [None] * n, [None] * n, at),
        )
    return [r[2] for r in rows], ready_at


def _capped(conn, backlogs, **configuration):
    """setup(**configuration) with the backlogs (tenant, sender, count) queued before its quota windows are set:
    admission refuses a backlog that a spent cap holds past its validity, as an operator may add a cap to a queue
    that already holds more than the cap takes before it resets."""
    windows = {key: configuration.pop(key) for key in ("windows", "sender_windows") if key in configuration}
    destination = setup(conn, **configuration)
    for tenant, sender, count in backlogs:
        backlog(conn, tenant, sender, count)
    setup(conn, **configuration, **windows)
    return destination


def test_a_daily_cap_stops_claims_at_the_cap_and_resumes_at_local_midnight(conn):
    now = conn.execute("SELECT clock_timestamp()").fetchone()[0]
    zone, midnight = zone_with_midnight_ahead(now)
    destination = _capped(
        conn,
        [("t", "+15550000001", 200)],
        rate=100,
        tenant_sets=[("s", 1)],
        tenants=[("t", "s", 1, [("+15550000001", None)])],
        windows={"per_day": 40, "reset_timezone": zone},
    )
    clock = Clock(conn, destination)
    clock.run(3)
    assert len(clock.sent) == 40  # exactly the cap, though the bucket allowed 300
    # spent: nothing more, and the claim says to come back at local midnight (not at UTC midnight)
    assert _claim(conn, destination, clock.at(clock.now)) == ([], midnight)
    assert conn.execute(
        "SELECT used, remaining, resets_at FROM fairlane.window_load WHERE destination = 'X'"
    ).fetchone() == (40, 0, midnight)
    before = (midnight - clock.start).total_seconds() - 0.2
    clock.now = before
    assert clock.claim() == []
    clock.now = before + 0.25  # 50 ms past local midnight
    clock.run(3)
    after = [s for s in clock.sent if s.at > before]
    assert len(after) == 40 and min(s.at for s in after) == pytest.approx(before + 0.25)
    assert conn.execute("SELECT count(*) FROM fairlane.messages WHERE status = 'sent'").fetchone()[0] == 80


def test_a_sliding_window_never_holds_more_than_its_quota(conn):
    destination = setup(
        conn,
        rate=50,
        tenant_sets=[("s", 1)],
        tenants=[("t", "s", 1, [("+15550000001", None)])],
        windows={"per_minute": 100, "window": "sliding"},
    )
    backlog(conn, "t", "+15550000001", 400)
    clock = Clock(conn, destination, step=0.1)
    clock.run(150)
    times = sorted(s.at for s in clock.sent)
    # in any 60 s at most 100; the window frees as its oldest second leaves it
    assert max(sum(1 for u in times[i:] if u < t + 60) for i, t in enumerate(times)) == 100
    assert len(times) >= 200  # it did free: about 100 each 61 s


def test_a_senders_spent_daily_cap_goes_to_the_others_within_a_second(conn):
    zone, _ = zone_with_midnight_ahead(conn.execute("SELECT clock_timestamp()").fetchone()[0])
    destination = _capped(
        conn,
        [("ta", "+15550000001", 2000), ("ta", "+15550000002", 2000), ("tb", "+15550000003", 2000)],
        rate=100,
        tenant_sets=[("a", 1), ("b", 1)],
        tenants=[
            ("ta", "a", 1, [("+15550000001", None), ("+15550000002", None)]),
            ("tb", "b", 1, [("+15550000003", None)]),
        ],
        sender_windows={"+15550000001": {"per_day": 60, "reset_timezone": zone}},
    )
    clock = Clock(conn, destination)
    clock.run(8)
    capped = [s.at for s in clock.sent if s.queue == "ta/+15550000001"]
    assert len(capped) == 60  # the cap, exactly
    spent = max(capped)
    assert 2.0 < spent < 3.0  # at its quarter of the quota (25/s)
    # from a second after it was spent: the tenant's other sender takes the tenant's half, the other tenant keeps its
    measured = clock.segments(spent + 1, spent + 5)
    queues = [Queue("ta/+15550000002", "ta", "a"), Queue("tb/+15550000003", "tb", "b")]
    assert fairness_error(measured, ideal_rates(100, queues, {"a": 1, "b": 1})) <= 0.05, measured
    row = conn.execute(
        "SELECT eligible, waiting_for, binding_limit, limit_remaining FROM fairlane.queue_scores "
        "WHERE sender = '+15550000001'"
    ).fetchone()
    assert row == (False, "sender per_day quota spent", "sender per_day", 0)


def test_a_tenants_only_sender_spent_leaves_its_share_to_other_tenants(conn):
    destination = _capped(
        conn,
        [("ta", "+15550000001", 500), ("tb", "+15550000003", 2000)],
        rate=100,
        tenant_sets=[("a", 1), ("b", 1)],
        tenants=[("ta", "a", 1, [("+15550000001", None)]), ("tb", "b", 1, [("+15550000003", None)])],
        sender_windows={"+15550000001": {"per_hour": 30, "window": "sliding"}},
    )
    clock = Clock(conn, destination)
    clock.run(5)
    spent = max(s.at for s in clock.sent if s.queue == "ta/+15550000001")
    assert sum(1 for s in clock.sent if s.queue == "ta/+15550000001") == 30
    measured = clock.segments(spent + 1, 5)
    assert measured == {"tb/+15550000003": pytest.approx(100 * (5 - spent - 1), abs=12)}


def test_admission_refuses_what_a_spent_cap_holds_past_its_validity(conn):
    now = conn.execute("SELECT clock_timestamp()").fetchone()[0]
    zone, midnight = zone_with_midnight_ahead(now, hours=1)  # 1 to 2 hours ahead
    destination = setup(
        conn,
        rate=100,
        burst=40,  # a bucket of 20: the ten go in one claim
        tenant_sets=[("s", 1)],
        tenants=[("t", "s", 1, [("+15550000001", None)])],
        windows={"per_day": 10, "reset_timezone": zone},
    )
    backlog(conn, "t", "+15550000001", 10)
    taken, _ = _claim(conn, destination, None)
    assert len(taken) == 10
    with pytest.raises(psycopg.Error) as refused:
        conn.execute(
            "SELECT fairlane.submit(tenant => 't', recipient => '+15551234567', body => 'x', validity_seconds => 600)"
        )
    assert refused.value.sqlstate == "FL429"
    detail = error_detail(refused.value)
    left = (midnight - conn.execute("SELECT clock_timestamp()").fetchone()[0]).total_seconds()
    assert detail["code"] == "queue_overflow" and detail["binding_limit"] == "destination per_day"
    assert left <= detail["retry_after_seconds"] <= left + 2
    assert "destination per_day quota" in str(refused.value)
    # valid past the reset (and within max_drain_seconds): accepted, and it waits for the reset
    conn.execute(
        "SELECT fairlane.submit(tenant => 't', recipient => '+15551234567', body => 'x', validity_seconds => 9000)"
    )
    state = conn.execute(
        "SELECT admission, binding_limit, limit_resets_at FROM fairlane.queue_state WHERE destination = 'X'"
    ).fetchone()
    assert state == ("open", "destination per_day", midnight)


def test_windows_are_configured_and_checked(conn):
    setup(conn, rate=100, tenant_sets=[("s", 1)], tenants=[("t", "s", 1, [("+15550000001", None)])])
    config = {
        "tenant_sets": [{"name": "s"}],
        "gateways": [{"name": "g", "kind": "http", "url": "http://127.0.0.1:9/"}],
        "destinations": [{"code": "X", "gateway": "g", "rate": 100, "per_minute": 600, "per_day": 5000}],
        "tenants": [
            {
                "name": "t",
                "tenant_set": "s",
                "senders": [{"address": "+15550000001", "type": "long_code", "per_hour": 90, "window": "sliding"}],
            }
        ],
    }
    changes = apply_config(conn, config).changes
    assert any("per_minute None -> 600" in c for c in changes), changes
    assert conn.execute(
        "SELECT scope, window_name, kind, quota FROM fairlane.window_load ORDER BY window_id"
    ).fetchall() == [
        ("destination", "per_minute", "calendar", 600),
        ("destination", "per_day", "calendar", 5000),
        ("sender", "per_hour", "sliding", 90),
    ]
    assert apply_config(conn, config).changes == []  # idempotent
    config["destinations"][0].pop("per_minute")
    apply_config(conn, config)
    assert conn.execute("SELECT count(*) FROM fairlane.quota_windows WHERE destination_id IS NOT NULL").fetchone() == (
        1,
    )
    with pytest.raises(Exception, match=r"config.destinations\[0\].reset_timezone must be a time zone"):
        apply_config(conn, {**config, "destinations": [{**config["destinations"][0], "reset_timezone": "Mars/Base"}]})
    with pytest.raises(Exception, match=r"config.destinations\[0\].window must be one of calendar, sliding"):
        apply_config(conn, {**config, "destinations": [{**config["destinations"][0], "window": "rolling"}]})
    # straight SQL gets the same check, naming the field
    with pytest.raises(psycopg.Error) as refused:
        conn.execute("UPDATE fairlane.destinations SET reset_timezone = 'Mars/Base' WHERE code = 'X'")
    assert error_detail(refused.value)["field"] == "reset_timezone"


async def test_windows_over_the_admin_api_and_retry_after_at_the_reset(conn, dsn):
    api = await start_api(conn, dsn)
    try:
        now = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        zone, midnight = zone_with_midnight_ahead(now, hours=1)  # 1 to 2 hours ahead
        capped = {"gateway": "sim", "rate": 100, "burst": 20, "per_day": 2, "reset_timezone": zone}
        response = await api.client.put("/v1/admin/destinations/US-SC", json=capped, headers=api.admin)
        assert response.status == 200, await response.text()
        shown = await (await api.client.get("/v1/admin/destinations/US-SC", headers=api.admin)).json()
        assert (shown["per_day"], shown["reset_timezone"], shown["window"], shown["per_minute"]) == (
            2,
            zone,
            "calendar",
            None,
        )
        sender = {"type": "short_code", "per_hour": 50, "window": "sliding"}
        response = await api.client.put("/v1/admin/tenants/acme/senders/55501", json=sender, headers=api.admin)
        assert response.status == 200 and (await response.json())["per_hour"] == 50
        bad = {**capped, "reset_timezone": "Mars/Base"}
        response = await api.client.put("/v1/admin/destinations/US-SC", json=bad, headers=api.admin)
        assert response.status == 400
        error = (await response.json())["error"]
        assert error["code"] == "invalid_request" and error["details"]["field"] == "reset_timezone", error
        # the day's two segments go, then the cap is spent until local midnight in `zone`
        for _ in range(2):
            response = await api.send("acme", {"to": "+15551234567", "from": "55501", "body": "x"})
            assert response.status == 202
        destination = conn.execute("SELECT id FROM fairlane.destinations WHERE code = 'US-SC'").fetchone()[0]
        assert len(_claim(conn, destination, None)[0]) == 2
        message = {"to": "+15551234567", "from": "55501", "body": "x", "validity_seconds": 600}
        response = await api.send("acme", message)
        assert response.status == 429
        error = (await response.json())["error"]
        left = (midnight - conn.execute("SELECT clock_timestamp()").fetchone()[0]).total_seconds()
        assert error["code"] == "queue_overflow" and error["details"]["binding_limit"] == "destination per_day"
        assert left <= int(response.headers["Retry-After"]) <= left + 2
        # valid past the reset: accepted (it waits for the reset)
        response = await api.send("acme", {**message, "validity_seconds": 9000})
        assert response.status == 202
    finally:
        await api.client.close()
