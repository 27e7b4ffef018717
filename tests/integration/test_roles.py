"""Tenant-scoped database roles: insert and read only their own tenant's rows (row-level security)."""

import uuid

import psycopg
import pytest

from tests.integration.fixtures import BASIC, apply_config, error_detail, insert_outbox, submit


@pytest.fixture
def roles(conn, embedded_server):
    """Two login roles, one per tenant (role names are cluster-wide, so unique per test)."""
    suffix = uuid.uuid4().hex[:8]
    names = {"acme": f"acme_{suffix}", "globex": f"globex_{suffix}"}
    tenants = [{**t, "db_role": names[t["name"]]} if t["name"] in names else t for t in BASIC["tenants"]]
    result = apply_config(conn, {**BASIC, "tenants": tenants})
    assert f"granted database role {names['acme']} to tenant acme" in result.changes
    dbname = conn.info.dbname
    connections = {
        tenant: psycopg.connect(embedded_server.dsn(dbname, user=role), autocommit=True)
        for tenant, role in names.items()
    }
    yield connections
    for connection in connections.values():
        connection.close()


def test_each_role_submits_and_reads_only_its_own(conn, roles):
    acme, globex = roles["acme"], roles["globex"]
    acme_id = submit(acme, tenant="acme", recipient="+15551234567", body="from acme")
    insert_outbox(globex, [{"tenant": "globex", "recipient": "+15551234567", "body": "from globex"}] * 2)
    with (
        acme.cursor() as cursor,
        cursor.copy("COPY fairlane.outbox (tenant, recipient, body) FROM STDIN") as copy,
    ):
        copy.write_row(("acme", "+15557654321", "copied"))
    assert conn.execute("SELECT count(*) FROM fairlane.messages").fetchone()[0] == 4
    assert [r[0] for r in acme.execute("SELECT body FROM fairlane.messages ORDER BY id")] == [
        "from acme",
        "copied",
    ]
    assert [r[0] for r in globex.execute("SELECT body FROM fairlane.messages")] == ["from globex"] * 2
    assert globex.execute("SELECT count(*) FROM fairlane.messages WHERE id = %s", (acme_id,)).fetchone()[0] == 0
    assert acme.execute("SELECT count(*) FROM fairlane.message_events").fetchone()[0] == 2


def test_a_role_cannot_submit_for_another_tenant(conn, roles):
    with pytest.raises(psycopg.Error) as raised:
        submit(roles["acme"], tenant="globex", recipient="+15551234567", body="spoofed")
    assert raised.value.sqlstate == "FL403" and error_detail(raised.value)["value"] == "globex"
    with pytest.raises(psycopg.Error) as raised:
        own = {"tenant": "globex", "recipient": "+15551234567", "body": "own"}
        insert_outbox(roles["globex"], [own, {**own, "tenant": "acme"}])
    assert raised.value.sqlstate == "FL403"
    with pytest.raises(psycopg.Error) as raised:
        with (
            roles["acme"].cursor() as cursor,
            cursor.copy("COPY fairlane.outbox (tenant, recipient, body) FROM STDIN") as copy,
        ):
            copy.write_row(("globex", "+15557654321", "copied"))
    assert raised.value.sqlstate == "FL403"
    assert conn.execute("SELECT count(*) FROM fairlane.messages").fetchone()[0] == 0


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM fairlane.tenants",
        "SELECT * FROM fairlane.api_keys",
        "SELECT * FROM fairlane.queue_state",
        "UPDATE fairlane.destinations SET rate = 1000",
        "UPDATE fairlane.messages SET status = 'canceled'",
        "DELETE FROM fairlane.messages",
        "INSERT INTO fairlane.routes (prefix, sender_type, destination_id) VALUES ('+9', 'long_code', 1)",
        "SELECT fairlane.grant_tenant_role_v1('globex', current_user)",
    ],
)
def test_a_role_cannot_touch_configuration_or_other_rows(conn, roles, statement):
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        roles["acme"].execute(statement)
