"""Secrets hygiene (issue 13, docs/decisions/0017): admin GETs never show a signing secret or a receipts token;
a signing secret rotates with a grace period during which callbacks carry both signatures; `fairlane run`
prints a made-up admin token but never a given one, no password of the DSN, passes the simulator its receipts
token by the environment and reuses the demo tenant's key across starts; a tenant's database role learns
nothing of other tenants through the role functions."""

import asyncio
import uuid
from urllib.parse import urlsplit

import psycopg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from service.cli import run
from service.cli.main import EXAMPLE_CONFIG, load_config
from service.workers.callbacks import CallbackSender, CallbackSettings
from tests.integration.api import start_api
from tests.integration.fixtures import BASIC, apply_config, submit


async def _received_callback(conn, dsn) -> tuple[bytes, dict[str, str]]:
    """One callback of tenant acme as a receiver gets it."""
    got: asyncio.Future[tuple[bytes, dict[str, str]]] = asyncio.get_running_loop().create_future()

    async def hook(request):
        if not got.done():
            got.set_result((await request.read(), dict(request.headers)))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    receiver = TestServer(app, host="127.0.0.1")
    await receiver.start_server()
    sender = CallbackSender(dsn, CallbackSettings(poll_seconds=0.2))
    task = asyncio.create_task(sender.run())
    try:
        submit(
            conn, tenant="acme", recipient="+15551234567", body="hi", status_callback=str(receiver.make_url("/hook"))
        )
        async with asyncio.timeout(10):
            return await got
    finally:
        sender.stop()
        await asyncio.wait_for(task, 10)
        await receiver.close()


async def test_a_signing_secret_rotates_with_a_grace_period(conn, dsn):
    api = await start_api(conn, dsn, callbacks={"allow_networks": ["127.0.0.0/8"], "allow_http": True})
    try:
        shown = await (await api.client.get("/v1/admin/tenants/acme", headers=api.admin)).json()
        assert "signing_secret" not in shown and shown["previous_signing_secret_valid_until"] is None
        (old,) = conn.execute("SELECT signing_secret FROM fairlane.tenants WHERE name = 'acme'").fetchone()
        response = await api.client.post("/v1/admin/tenants/acme/signing-secret/rotate", headers=api.admin)
        rotated = await response.json()
        assert response.status == 200, rotated
        new = rotated["signing_secret"]
        assert new.startswith("whsec_") and new != old and rotated["previous_signing_secret_valid_until"]
        again = await (await api.client.get("/v1/admin/tenants/acme", headers=api.admin)).json()
        assert "signing_secret" not in again and again["previous_signing_secret_valid_until"]
        body, headers = await _received_callback(conn, dsn)
        assert len(headers["webhook-signature"].split(" ")) == 2
        Webhook(old).verify(body, headers)  # receivers still on the old secret keep verifying
        Webhook(new).verify(body, headers)  # and those already on the new one too

        response = await api.client.post(
            "/v1/admin/tenants/acme/signing-secret/rotate", json={"grace_seconds": 0}, headers=api.admin
        )
        newest = (await response.json())["signing_secret"]
        conn.execute("DELETE FROM fairlane.callbacks")
        body, headers = await _received_callback(conn, dsn)
        Webhook(newest).verify(body, headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(new).verify(body, headers)
        response = await api.client.post("/v1/admin/tenants/nope/signing-secret/rotate", headers=api.admin)
        assert response.status == 404
        response = await api.client.post(
            "/v1/admin/tenants/acme/signing-secret/rotate", json={"grace_seconds": -1}, headers=api.admin
        )
        assert response.status == 400 and (await response.json())["error"]["details"]["field"] == "grace_seconds"
    finally:
        await api.client.close()


def _prepare(dsn: str, tmp_path, admin_token: str | None):
    options = run.RunOptions(
        dsn=dsn,
        config=None,
        example=load_config(EXAMPLE_CONFIG),
        workers=1,
        host="127.0.0.1",
        port=1,
        admin_token=admin_token,
        env={},
        keys_file=tmp_path / "run-keys.json",
    )
    children, lines = run.prepare(options)
    for child in children:
        for listener in child.listeners:
            listener.close()
    return children, "\n".join(lines)


def test_run_prints_no_given_secret_and_reuses_the_demo_key(conn, dsn, tmp_path):
    parts = urlsplit(dsn)
    with_password = parts._replace(netloc=f"postgres:s3cret-password@{parts.netloc.rpartition('@')[2]}").geturl()
    given = "an-admin-token-the-operator-chose"
    children, text = _prepare(with_password, tmp_path, given)
    assert given not in text and "s3cret-password" not in text
    assert "database:   postgresql://postgres:***@" in text
    (simulator,) = [child for child in children if child.name.startswith("simulator")]
    (token,) = conn.execute("SELECT receipts_token FROM fairlane.gateways WHERE name = 'carrier-sim'").fetchone()
    assert token not in " ".join(simulator.command)  # not on a command line, where every user can read it
    assert simulator.env["FAIRLANE_SIMULATOR_RECEIPTS_TOKEN"] == token
    assert f"receipts token of gateway carrier-sim (shown once): {token}" in text
    key = text.split("API key of tenant demo: ", 1)[1].split()[0]
    assert (tmp_path / "run-keys.json").stat().st_mode & 0o077 == 0

    _, again = _prepare(with_password, tmp_path, None)
    assert again.split("API key of tenant demo: ", 1)[1].split()[0] == key  # the same key, not a new one
    made_up = again.split("admin token: ", 1)[1].split()[0]
    assert len(made_up) >= 24 and f"dashboard#token={made_up}" in again  # a made-up token is shown
    assert "receipts token" not in again  # shown once, when made
    assert conn.execute("SELECT count(*) FROM fairlane.api_keys k JOIN fairlane.tenants t ON t.id = k.tenant_id "
                        "WHERE t.name = 'demo'").fetchone()[0] == 1  # fmt: skip
    conn.execute("UPDATE fairlane.api_keys SET revoked_at = now()")
    _, third = _prepare(with_password, tmp_path, None)
    assert third.split("API key of tenant demo: ", 1)[1].split()[0] != key  # revoked: a new one


@pytest.fixture
def roles(conn, embedded_server):
    suffix = uuid.uuid4().hex[:8]
    names = {"acme": f"acme_{suffix}", "globex": f"globex_{suffix}"}
    tenants = [{**t, "db_role": names[t["name"]]} if t["name"] in names else t for t in BASIC["tenants"]]
    apply_config(conn, {**BASIC, "tenants": tenants})
    connection = psycopg.connect(embedded_server.dsn(conn.info.dbname, user=names["acme"]), autocommit=True)
    yield names, connection
    connection.close()


def test_a_tenant_role_learns_nothing_of_other_tenants(conn, roles):
    names, acme = roles
    ask = "SELECT fairlane.role_tenant_v1(%(r)s), fairlane.role_tenant_id_v1(%(r)s), fairlane.viewer_tenant_v1(%(r)s)"
    own = acme.execute(ask, {"r": names["acme"]}).fetchone()
    assert own[0] == "acme" and own[1] == own[2] is not None
    assert acme.execute(ask, {"r": names["globex"]}).fetchone() == (None, None, 0)
    assert acme.execute(ask, {"r": "postgres"}).fetchone() == (None, None, 0)
    # an operator still learns any role's tenant
    assert conn.execute(ask, {"r": names["globex"]}).fetchone()[0] == "globex"
    submit(conn, tenant="globex", recipient="+15551234567", body="globex only")
    assert acme.execute("SELECT count(*) FROM fairlane.messages").fetchone()[0] == 0
