from tests.integration.fixtures import apply_basic


def test_smoke(conn):
    apply_basic(conn)
    message_id = conn.execute(
        "select fairlane.submit(tenant => 'acme', recipient => '+15551234567', body => 'hello')"
    ).fetchone()[0]
    row = conn.execute(
        "select status, segments, encoding from fairlane.messages where id = %s", (message_id,)
    ).fetchone()
    print(row)
    print(conn.execute("select * from fairlane.queue_state").fetchall())
    assert row[0] == "queued"
