"""Every validation rule, through fairlane.submit and through fairlane.outbox alike."""

import datetime as dt

import psycopg
import pytest

from tests.integration.fixtures import apply_basic, error_detail, insert_outbox, submit

GOOD = {"tenant": "acme", "recipient": "+15551234567", "body": "hello"}
NOW = dt.datetime.now(dt.UTC)

CASES = [
    # (overrides, sqlstate, code, field, value)
    ({"tenant": None}, "FL400", "invalid_request", "tenant", None),
    ({"tenant": "nobody"}, "FL404", "not_found", "tenant", "nobody"),
    ({"recipient": None}, "FL400", "invalid_request", "recipient", None),
    ({"recipient": "5551234567"}, "FL400", "invalid_request", "recipient", "5551234567"),
    ({"recipient": "+0551234567"}, "FL400", "invalid_request", "recipient", "+0551234567"),
    ({"recipient": "+1555"}, "FL400", "invalid_request", "recipient", "+1555"),
    ({"recipient": "+1555123456789012"}, "FL400", "invalid_request", "recipient", "+1555123456789012"),
    ({"recipient": "+1 555 123 4567"}, "FL400", "invalid_request", "recipient", "+1 555 123 4567"),
    ({"body": None}, "FL400", "invalid_request", "body", None),
    ({"body": ""}, "FL400", "invalid_request", "body", ""),
    ({"body": "x" * 1601}, "FL400", "invalid_request", "body", "x" * 40 + "..."),
    ({"sender": "+15550100002"}, "FL400", "invalid_request", "sender", "+15550100002"),
    ({"tenant": "hooli"}, "FL400", "invalid_request", "sender", None),
    ({"destination": "MARS"}, "FL404", "unknown_destination", "destination", "MARS"),
    ({"recipient": "+33612345678"}, "FL404", "unknown_destination", "recipient", "+33612345678"),
    ({"send_at": NOW + dt.timedelta(days=36)}, "FL400", "invalid_request", "send_at", None),
    ({"send_at": NOW - dt.timedelta(hours=1)}, "FL400", "invalid_request", "send_at", None),
    ({"validity_seconds": 0}, "FL400", "invalid_request", "validity_seconds", "0"),
    ({"validity_seconds": 36001}, "FL400", "invalid_request", "validity_seconds", "36001"),
    (
        {"status_callback": "ftp://example.com"},
        "FL400",
        "invalid_request",
        "status_callback",
        "ftp://example.com",
    ),
    ({"status_callback": "https://a b"}, "FL400", "invalid_request", "status_callback", "https://a b"),
    ({"idempotency_key": ""}, "FL400", "invalid_request", "idempotency_key", ""),
    ({"idempotency_key": "k" * 256}, "FL400", "invalid_request", "idempotency_key", "k" * 100),
]


def _via_submit(connection, row):
    submit(connection, **row)


def _via_outbox(connection, row):
    # the bad row is the third of three: the error names row 3 and nothing is inserted
    insert_outbox(connection, [GOOD, GOOD, row])


@pytest.mark.parametrize("path", [_via_submit, _via_outbox], ids=["submit", "outbox"])
@pytest.mark.parametrize(("overrides", "sqlstate", "code", "field", "value"), CASES)
def test_rule(conn, path, overrides, sqlstate, code, field, value):
    apply_basic(conn)
    with pytest.raises(psycopg.Error) as raised:
        path(conn, {**GOOD, **overrides})
    error = raised.value
    detail = error_detail(error)
    assert error.sqlstate == sqlstate
    assert (detail["code"], detail["field"], error.diag.column_name) == (code, field, field)
    if value is not None:
        assert detail["value"] == value
        assert value[:20] in error.diag.message_primary or field in error.diag.message_primary
    if path is _via_outbox:
        assert detail["row"] == 3 and error.diag.message_primary.startswith("row 3: ")
    else:
        assert detail["row"] is None and not error.diag.message_primary.startswith("row")
    assert conn.execute("SELECT count(*) FROM fairlane.messages").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM fairlane.queues").fetchone()[0] == 0


def test_valid_message_fields(conn):
    apply_basic(conn)
    message_id = submit(
        conn,
        tenant="acme",
        recipient="+15551234567",
        body="hello",
        validity_seconds=60,
        status_callback="https://example.com/cb",
    )
    row = conn.execute(
        """SELECT m.status, m.segments, m.encoding, d.code, s.address, m.status_callback,
                  round(extract(epoch FROM m.expires_at - m.created_at))
           FROM fairlane.messages m JOIN fairlane.queues q ON q.id = m.queue_id
           JOIN fairlane.destinations d ON d.id = q.destination_id JOIN fairlane.senders s ON s.id = q.sender_id
           WHERE m.id = %s""",
        (message_id,),
    ).fetchone()
    assert row == ("queued", 1, "GSM-7", "US-SC", "55501", "https://example.com/cb", 60)
    events = conn.execute("SELECT status FROM fairlane.message_events WHERE message_id = %s", (message_id,)).fetchall()
    assert events == [("queued",)]


def test_destination_default_validity(conn):
    apply_basic(conn)
    conn.execute("UPDATE fairlane.destinations SET default_validity_seconds = 600 WHERE code = 'US-SC'")
    message_id = submit(conn, **GOOD)
    seconds = conn.execute(
        "SELECT round(extract(epoch FROM expires_at - created_at)) FROM fairlane.messages WHERE id = %s",
        (message_id,),
    ).fetchone()[0]
    assert seconds == 600


def test_scheduled_message(conn):
    apply_basic(conn)
    send_at = NOW + dt.timedelta(hours=2)
    message_id = submit(conn, **GOOD, send_at=send_at, validity_seconds=120)
    status, expires_at = conn.execute(
        "SELECT status, expires_at FROM fairlane.messages WHERE id = %s", (message_id,)
    ).fetchone()
    assert status == "scheduled"
    assert expires_at == send_at + dt.timedelta(seconds=120)
    # scheduled messages are not in the queue yet
    assert conn.execute("SELECT queued_count FROM fairlane.queues").fetchone()[0] == 0


def test_named_sender_and_explicit_destination(conn):
    apply_basic(conn)
    message_id = submit(conn, **GOOD, sender="+15550100001", destination="GB")
    row = conn.execute(
        """SELECT d.code, s.address FROM fairlane.messages m JOIN fairlane.queues q ON q.id = m.queue_id
           JOIN fairlane.destinations d ON d.id = q.destination_id JOIN fairlane.senders s ON s.id = q.sender_id
           WHERE m.id = %s""",
        (message_id,),
    ).fetchone()
    assert row == ("GB", "+15550100001")


def test_one_queue_per_tenant_destination_sender(conn):
    apply_basic(conn)
    for _ in range(3):
        submit(conn, **GOOD)
    submit(conn, **GOOD, sender="+15550100001")
    submit(conn, tenant="globex", recipient="+15551234567", body="hi")
    rows = conn.execute(
        """SELECT t.name, d.code, s.address, q.queued_count, q.queued_segments FROM fairlane.queues q
           JOIN fairlane.tenants t ON t.id = q.tenant_id JOIN fairlane.destinations d ON d.id = q.destination_id
           JOIN fairlane.senders s ON s.id = q.sender_id ORDER BY q.id"""
    ).fetchall()
    assert rows == [
        ("acme", "US-SC", "55501", 3, 3),
        ("acme", "US-LC", "+15550100001", 1, 1),
        ("globex", "US-LC", "+15550100002", 1, 1),
    ]


def test_a_queue_never_mixes_tenants(conn):
    apply_basic(conn)
    submit(conn, **GOOD)
    queue_id, sender_id = conn.execute("SELECT id, sender_id FROM fairlane.queues").fetchone()
    globex = conn.execute("SELECT id FROM fairlane.tenants WHERE name = 'globex'").fetchone()[0]
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute(
            """INSERT INTO fairlane.messages (tenant_id, queue_id, status, recipient, body, segments, encoding,
               expires_at) VALUES (%s, %s, 'queued', '+15551234567', 'x', 1, 'GSM-7', now())""",
            (globex, queue_id),
        )
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute(
            "INSERT INTO fairlane.queues (tenant_id, destination_id, sender_id) SELECT %s, destination_id, %s "
            "FROM fairlane.queues LIMIT 1",
            (globex, sender_id),
        )
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("UPDATE fairlane.messages SET status = 'lost'")
