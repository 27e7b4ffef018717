"""Idempotency keys: a repeat within 24 h returns the original message; the same key with a different
request is idempotency_mismatch; keys are per tenant."""

import threading

import psycopg
import pytest

from tests.integration.fixtures import apply_basic, error_detail, insert_outbox, submit

MESSAGE = {
    "tenant": "acme",
    "recipient": "+15551234567",
    "body": "your code is 1234",
    "idempotency_key": "k-1",
}


def _messages(conn):
    return conn.execute("SELECT count(*) FROM fairlane.messages").fetchone()[0]


def test_replay_returns_the_original(conn):
    apply_basic(conn)
    first = submit(conn, **MESSAGE)
    assert submit(conn, **MESSAGE) == first
    assert _messages(conn) == 1
    assert conn.execute("SELECT queued_count FROM fairlane.queues").fetchone()[0] == 1


def test_mismatch(conn):
    apply_basic(conn)
    submit(conn, **MESSAGE)
    with pytest.raises(psycopg.Error) as raised:
        submit(conn, **{**MESSAGE, "body": "your code is 9999"})
    detail = error_detail(raised.value)
    assert raised.value.sqlstate == "FL422"
    assert (detail["code"], detail["field"], detail["value"]) == (
        "idempotency_mismatch",
        "idempotency_key",
        "k-1",
    )
    assert _messages(conn) == 1


def test_keys_are_per_tenant(conn):
    apply_basic(conn)
    first = submit(conn, **MESSAGE)
    other = submit(conn, **{**MESSAGE, "tenant": "globex"})
    assert other != first and _messages(conn) == 2


def test_expired_key_is_reused(conn):
    apply_basic(conn)
    first = submit(conn, **MESSAGE)
    conn.execute("UPDATE fairlane.idempotency_keys SET created_at = now() - interval '25 hours'")
    second = submit(conn, **{**MESSAGE, "body": "a new code"})
    assert second != first and _messages(conn) == 2


def test_duplicates_within_one_statement(conn):
    apply_basic(conn)
    with conn.transaction():  # fairlane.last_message_id is transaction-local
        insert_outbox(conn, [MESSAGE, {**MESSAGE, "idempotency_key": "k-2"}, MESSAGE])
        last = int(conn.execute("SELECT current_setting('fairlane.last_message_id')").fetchone()[0])
    assert _messages(conn) == 2
    assert last == conn.execute("SELECT message_id FROM fairlane.idempotency_keys WHERE key = 'k-1'").fetchone()[0]
    with pytest.raises(psycopg.Error) as raised:
        insert_outbox(conn, [{**MESSAGE, "idempotency_key": "k-3"}, {**MESSAGE, "idempotency_key": "k-3", "body": "b"}])
    assert error_detail(raised.value)["row"] == 2
    assert _messages(conn) == 2


def test_replay_in_a_batch_with_new_rows(conn):
    apply_basic(conn)
    original = submit(conn, **MESSAGE)
    with conn.transaction():
        insert_outbox(conn, [{**MESSAGE, "idempotency_key": "k-9"}, MESSAGE])
        last = int(conn.execute("SELECT current_setting('fairlane.last_message_id')").fetchone()[0])
    assert _messages(conn) == 2
    assert last == original


def test_concurrent_submissions_with_one_key_make_one_message(conn, dsn):
    apply_basic(conn)
    workers = 6
    barrier = threading.Barrier(workers)
    results = []

    def run():
        with psycopg.connect(dsn, autocommit=True) as connection:
            barrier.wait()
            for _ in range(3):  # a concurrent claim of the key is a retryable serialization failure
                try:
                    results.append(submit(connection, **MESSAGE))
                    return
                except psycopg.errors.SerializationFailure:
                    continue

    threads = [threading.Thread(target=run) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == workers and len(set(results)) == 1
    assert _messages(conn) == 1


def test_replay_does_not_depend_on_the_session_time_zone(conn):
    import datetime as dt

    apply_basic(conn)
    send_at = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    conn.execute("SET TimeZone = 'UTC'")
    first = submit(conn, **MESSAGE, send_at=send_at)
    conn.execute("SET TimeZone = 'Europe/Berlin'")
    assert submit(conn, **MESSAGE, send_at=send_at) == first


def test_null_fields_are_not_interchangeable(conn):
    apply_basic(conn)
    submit(conn, **MESSAGE, sender="55501")
    with pytest.raises(psycopg.Error) as raised:
        submit(conn, **MESSAGE, destination="55501")
    assert raised.value.sqlstate in ("FL422", "FL404")
