"""fairlane.outbox: INSERT ... VALUES, INSERT ... SELECT and COPY turn rows into queued messages; a bad row
aborts the statement and nothing is half-inserted; the outbox always reads empty."""

import psycopg
import pytest

from tests.integration.fixtures import apply_basic, error_detail, insert_outbox

COPY_COLUMNS = "(tenant, recipient, body, sender, validity_seconds)"


def _counts(conn):
    return conn.execute(
        "SELECT (SELECT count(*) FROM fairlane.messages), (SELECT count(*) FROM fairlane.message_events), "
        "(SELECT coalesce(sum(queued_count), 0) FROM fairlane.queues), (SELECT count(*) FROM fairlane.outbox)"
    ).fetchone()


def test_insert_select_thousand(conn):
    apply_basic(conn)
    conn.execute(
        """INSERT INTO fairlane.outbox (tenant, recipient, body)
           SELECT 'acme', '+1555' || lpad(i::text, 7, '0'), 'code ' || i FROM generate_series(1, 1000) i"""
    )
    assert _counts(conn) == (1000, 1000, 1000, 0)
    # FIFO order within the queue follows the statement's row order
    bodies = [r[0] for r in conn.execute("SELECT body FROM fairlane.messages ORDER BY id")]
    assert bodies == [f"code {i}" for i in range(1, 1001)]
    depth = conn.execute("SELECT depth FROM fairlane.queue_state WHERE tenant = 'acme'").fetchone()[0]
    assert depth == 1000


def test_multi_row_values_across_tenants_and_routes(conn):
    apply_basic(conn)
    insert_outbox(
        conn,
        [
            {"tenant": "acme", "recipient": "+15551234567", "body": "a"},
            {"tenant": "globex", "recipient": "+447700900123", "body": "b"},
            {"tenant": "initech", "recipient": "+442071234567", "body": "c"},
            {"tenant": "initech", "recipient": "+447700900123", "body": "d"},
        ],
    )
    rows = conn.execute(
        """SELECT t.name, d.code FROM fairlane.messages m JOIN fairlane.queues q ON q.id = m.queue_id
           JOIN fairlane.tenants t ON t.id = m.tenant_id JOIN fairlane.destinations d ON d.id = q.destination_id
           ORDER BY m.id"""
    ).fetchall()
    assert rows == [("acme", "US-SC"), ("globex", "GB"), ("initech", "GB-LDN"), ("initech", "GB")]


def test_copy(conn):
    apply_basic(conn)
    with conn.cursor() as cursor, cursor.copy(f"COPY fairlane.outbox {COPY_COLUMNS} FROM STDIN") as copy:
        for i in range(500):
            copy.write_row(("acme", f"+1555{i:07d}", f"copy {i}", "+15550100001" if i % 2 else None, 600))
    assert _counts(conn) == (500, 500, 500, 0)
    senders = conn.execute(
        """SELECT s.address, count(*) FROM fairlane.messages m JOIN fairlane.queues q ON q.id = m.queue_id
           JOIN fairlane.senders s ON s.id = q.sender_id GROUP BY 1 ORDER BY 1"""
    ).fetchall()
    assert senders == [("+15550100001", 250), ("55501", 250)]


def test_copy_bad_row_aborts_everything(conn):
    apply_basic(conn)
    with pytest.raises(psycopg.Error) as raised:
        with conn.cursor() as cursor, cursor.copy(f"COPY fairlane.outbox {COPY_COLUMNS} FROM STDIN") as copy:
            for i in range(100):
                recipient = "+1555BAD" if i == 57 else f"+1555{i:07d}"
                copy.write_row(("acme", recipient, "x", None, None))
    detail = error_detail(raised.value)
    assert (detail["row"], detail["field"], detail["value"]) == (58, "recipient", "+1555BAD")
    assert _counts(conn) == (0, 0, 0, 0)


def test_copy_type_error_names_column(conn):
    apply_basic(conn)
    with pytest.raises(psycopg.errors.InvalidTextRepresentation) as raised:
        with conn.cursor() as cursor, cursor.copy(f"COPY fairlane.outbox {COPY_COLUMNS} FROM STDIN") as copy:
            copy.write(b"acme\t+15551234567\thi\t\\N\tsoon\n")
    assert "validity_seconds" in str(raised.value) and "soon" in str(raised.value)
    assert _counts(conn) == (0, 0, 0, 0)


def test_bad_row_in_insert_select_rolls_back_the_statement_only(conn):
    apply_basic(conn)
    insert_outbox(conn, [{"tenant": "acme", "recipient": "+15551234567", "body": "kept"}])
    with pytest.raises(psycopg.Error) as raised:
        conn.execute(
            """INSERT INTO fairlane.outbox (tenant, recipient, body)
               SELECT 'acme', '+1555' || lpad(i::text, 7, '0'), CASE WHEN i = 700 THEN '' ELSE 'x' END
               FROM generate_series(1, 1000) i"""
        )
    assert error_detail(raised.value)["row"] == 700
    assert _counts(conn) == (1, 1, 1, 0)


def test_two_statements_in_one_transaction(conn):
    apply_basic(conn)
    with conn.transaction():
        insert_outbox(conn, [{"tenant": "acme", "recipient": "+15551234567", "body": "one"}])
        first = int(conn.execute("SELECT current_setting('fairlane.last_message_id')").fetchone()[0])
        insert_outbox(conn, [{"tenant": "acme", "recipient": "+15551234567", "body": "two"}] * 2)
        last = int(conn.execute("SELECT current_setting('fairlane.last_message_id')").fetchone()[0])
    assert last > first
    assert _counts(conn) == (3, 3, 3, 0)
