"""Migration 0006 (live and finished apart, docs/decisions/0014) keeps every message and event: a database
at 0005 with messages in every status, their events and their callbacks, upgraded, holds the same rows (the
finished ones in the partitions of when they finished), counts them in usage_daily, and the callbacks keep
the bodies the sender used to build; downgraded again, it holds them as before."""

import datetime as dt

import psycopg
import pytest

from db import migrate
from tests.integration.fixtures import submit

MESSAGE = "SELECT id, tenant_id, queue_id, status, recipient, body, segments, attempts, provider_id, error_code FROM "
EVENT = "SELECT id, message_id, tenant_id, status, at, detail FROM fairlane.message_events ORDER BY id"


def _rows(connection, query):
    return connection.execute(query).fetchall()


@pytest.fixture
def at_0005(scratch_dsn):
    migrate.upgrade(scratch_dsn, "0005")
    return scratch_dsn


@pytest.fixture
def scratch_dsn(embedded_server):
    name = "fairlane_migration_data"
    with psycopg.connect(embedded_server.dsn("postgres"), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
    yield embedded_server.dsn(name)
    with psycopg.connect(embedded_server.dsn("postgres"), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


# the configuration as 0005's tables hold it (today's `fairlane apply` writes today's columns)
CONFIGURATION_AT_0005 = """
INSERT INTO fairlane.tenant_sets (name, weight) VALUES ('enterprise', 3);
INSERT INTO fairlane.gateways (name, kind, url) VALUES ('sim', 'simulator', 'http://127.0.0.1:9/messages');
INSERT INTO fairlane.destinations (code, gateway_id, rate, burst) SELECT 'US-SC', id, 100, 20 FROM fairlane.gateways;
INSERT INTO fairlane.tenants (name, tenant_set_id, status_callback)
SELECT 'acme', id, 'https://x.test/h' FROM fairlane.tenant_sets;
INSERT INTO fairlane.senders (tenant_id, address, type) SELECT id, '55501', 'short_code' FROM fairlane.tenants;
INSERT INTO fairlane.routes (prefix, sender_type, destination_id)
SELECT '+1', 'short_code', id FROM fairlane.destinations;
"""


def _seed(connection) -> None:
    """Messages in every status through 0005's own functions, with a callback URL so events make callbacks."""
    connection.execute(CONFIGURATION_AT_0005)
    ids = [submit(connection, tenant="acme", recipient=f"+1555000{i:04d}", body=f"m{i}") for i in range(8)]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    submit(connection, tenant="acme", recipient="+15550009999", body="later", send_at=later)
    destination = connection.execute("SELECT id FROM fairlane.destinations WHERE code = 'US-SC'").fetchone()[0]
    connection.execute("UPDATE fairlane.destinations SET rate = 1000, burst = 1000")
    claimed = [row[0] for row in _rows(connection, f"SELECT message_id FROM fairlane.claim_v2({destination}, 6, 60)")]
    claim = connection.execute(f"SELECT claim_id FROM fairlane.claim_v2({destination}, 1, 60)").fetchone()
    outcomes = ["sent", "sent", "failed", "retry", "sent", "throttled"]
    claim_id = connection.execute("SELECT claim_id FROM fairlane.messages WHERE id = %s", (claimed[0],)).fetchone()[0]
    connection.execute(
        "SELECT fairlane.complete_v1(%s, %s, %s, %s, %s, %s, %s, 5)",
        (
            claim_id,
            claimed,
            outcomes,
            [f"p-{i}" for i in claimed],
            [None, None, "30003", "500", None, "throttled"],
            [None] * 6,
            [0, 0, 0, 0, 0, 0],
        ),
    )
    connection.execute("SELECT fairlane.receipt_v1('sim', %s, NULL, 'delivered', NULL)", (f"p-{claimed[0]}",))
    connection.execute(
        "SELECT fairlane.cancel_v1((SELECT id FROM fairlane.tenants WHERE name = 'acme'), %s)", (ids[7],)
    )
    assert claim is not None


def test_upgrade_keeps_every_message_event_and_callback_and_downgrade_too(at_0005):
    with psycopg.connect(at_0005, autocommit=True) as connection:
        _seed(connection)
        messages = _rows(connection, MESSAGE + "fairlane.messages ORDER BY id")
        events = _rows(connection, EVENT)
        statuses = {row[3] for row in messages}
        assert {"scheduled", "queued", "sending", "sent", "delivered", "failed", "canceled"} <= statuses
        callbacks = _rows(connection, "SELECT event_id, url, attempts FROM fairlane.callbacks ORDER BY event_id")
        assert len(callbacks) == len(events)

    migrate.upgrade(at_0005)
    with psycopg.connect(at_0005, autocommit=True) as connection:
        assert _rows(connection, MESSAGE + "fairlane.messages ORDER BY id") == messages
        assert _rows(connection, EVENT) == events
        live = {row[0] for row in _rows(connection, "SELECT id FROM fairlane.messages_live")}
        assert live == {row[0] for row in messages if row[3] in ("scheduled", "queued", "sending")}
        # finished ones sit in a partition of when they finished, their events with them
        assert _rows(connection, "SELECT count(*) FROM fairlane.messages_finished_default") == [(0,)]
        assert _rows(connection, "SELECT count(*) FROM fairlane.history_partitions")[0][0] >= 1
        moved = _rows(connection, "SELECT count(*) FROM fairlane.message_events_finished")[0][0]
        assert moved == sum(1 for event in events if event[1] not in live)
        # each message's event_count is its number of events; callbacks carry their bodies
        counts = dict(_rows(connection, "SELECT id, event_count FROM fairlane.messages"))
        assert all(counts[row[0]] == sum(1 for e in events if e[1] == row[0]) for row in messages)
        assert (
            _rows(connection, "SELECT event_id, url, attempts FROM fairlane.callbacks ORDER BY event_id") == callbacks
        )
        payload = connection.execute(
            "SELECT payload::jsonb FROM fairlane.callbacks ORDER BY event_id DESC LIMIT 1"
        ).fetchone()[0]
        assert payload["data"]["status"] == "canceled" and payload["data"]["sequence"] == 2
        # usage counts every finished message by status
        usage = dict(_rows(connection, "SELECT status, sum(messages) FROM fairlane.usage_daily GROUP BY status"))
        finished = {}
        for row in messages:
            if row[3] not in ("scheduled", "queued", "sending"):
                finished[row[3]] = finished.get(row[3], 0) + 1
        assert usage == finished

    migrate.downgrade(at_0005, "0005")
    with psycopg.connect(at_0005, autocommit=True) as connection:
        assert _rows(connection, MESSAGE + "fairlane.messages ORDER BY id") == messages
        assert _rows(connection, EVENT) == events
