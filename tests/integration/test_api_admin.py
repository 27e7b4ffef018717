"""Admin endpoints over real HTTP: idempotent PUTs (201 created, 200 after), GET, DELETE (409 while in
use), API key rotation and revocation, routes, queue scores, and the curl walk-through of the issue."""

import pytest

from tests.integration.api import JSON, start_api


@pytest.fixture
async def api(conn, dsn):
    api = await start_api(conn, dsn)
    yield api
    await api.client.close()


async def _put(api, path, body, status):
    response = await api.client.put(path, json=body, headers=api.admin)
    payload = await response.json()
    assert response.status == status, payload
    return payload


async def test_a_new_user_configures_everything_and_sends(api):
    await _put(api, "/v1/admin/tenant-sets/startups", {"weight": 2}, 201)
    assert await _put(api, "/v1/admin/tenant-sets/startups", {"weight": 2}, 200) == {"name": "startups", "weight": 2}
    tenant = await _put(api, "/v1/admin/tenants/pied-piper", {"tenant_set": "startups"}, 201)
    assert tenant["api_key"].startswith("fl_") and tenant["signing_secret"].startswith("whsec_")
    again = await _put(api, "/v1/admin/tenants/pied-piper", {"tenant_set": "startups", "weight": 3}, 200)
    assert "api_key" not in again and again["weight"] == 3
    await _put(api, "/v1/admin/tenants/pied-piper/senders/+15550107777", {"type": "long_code"}, 201)
    gateway = {"kind": "simulator", "url": "http://127.0.0.1:9/messages", "max_in_flight": 5}
    assert (await _put(api, "/v1/admin/gateways/carrier", gateway, 201))["max_in_flight"] == 5
    destination = await _put(api, "/v1/admin/destinations/CA", {"gateway": "carrier", "rate": 30}, 201)
    assert (destination["burst"], destination["max_drain_seconds"], destination["allocations"]) == (6, 14400, [])
    allocation = await _put(api, "/v1/admin/destinations/CA/allocations/startups", {"rate": 12}, 201)
    assert allocation == {"destination": "CA", "tenant_set": "startups", "weight": None, "rate": 12}
    await _put(api, "/v1/admin/destinations/CA", {"gateway": "carrier", "rate": 40}, 200)
    assert (
        len((await (await api.client.get("/v1/admin/destinations/CA", headers=api.admin)).json())["allocations"]) == 1
    )

    routes = [{"prefix": "+1", "sender_type": "long_code", "destination": "CA"}]
    assert (await _put(api, "/v1/admin/routes", {"routes": routes}, 200))["routes"] == routes

    key = {"Authorization": f"Bearer {tenant['api_key']}"}
    response = await api.client.post("/v1/messages", json={"to": "+14165550123", "body": "hi"}, headers=key)
    message = await response.json()
    assert response.status == 202 and message["destination"] == "CA" and message["from"] == "+15550107777"
    scores = (await (await api.client.get("/v1/admin/queues?destination=CA", headers=api.admin)).json())["queues"]
    assert [(row["tenant"], row["rank"]) for row in scores] == [("pied-piper", 1)]


async def test_gets_and_deletes(api):
    for path in (
        "/v1/admin/tenant-sets/retail",
        "/v1/admin/tenants/acme",
        "/v1/admin/tenants/acme/senders/55501",
        "/v1/admin/gateways/sim",
        "/v1/admin/destinations/US-SC",
        "/v1/admin/routes",
    ):
        response = await api.client.get(path, headers=api.admin)
        assert response.status == 200, path
    assert (await (await api.client.get("/v1/admin/tenants/acme", headers=api.admin)).json())["tenant_set"] == (
        "enterprise"
    )
    for path in ("/v1/admin/tenant-sets/nope", "/v1/admin/tenants/nope", "/v1/admin/destinations/NOPE"):
        response = await api.client.get(path, headers=api.admin)
        assert response.status == 404 and (await response.json())["error"]["code"] == "not_found"

    # in use: a tenant set with tenants, a gateway with destinations, a destination with routes
    for path in ("/v1/admin/tenant-sets/retail", "/v1/admin/gateways/sim", "/v1/admin/destinations/US-SC"):
        response = await api.client.delete(path, headers=api.admin)
        assert response.status == 409, path
        assert (await response.json())["error"]["code"] == "conflict"
    assert (await api.client.delete("/v1/admin/tenants/hooli", headers=api.admin)).status == 204
    assert (await api.client.get("/v1/admin/tenants/hooli", headers=api.admin)).status == 404
    assert (await api.client.delete("/v1/admin/tenants/hooli", headers=api.admin)).status == 404


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/admin/tenant-sets/x", {"weight": -1}, "weight"),
        ("/v1/admin/tenant-sets/x", {"weight": "heavy"}, "weight"),
        ("/v1/admin/tenant-sets/x", {"weight": 1, "colour": "red"}, "colour"),
        ("/v1/admin/tenant-sets/x", {"name": "y"}, "name"),
        ("/v1/admin/tenant-sets/bad name!", {"weight": 1}, "name"),
        ("/v1/admin/tenants/t", {}, "tenant_set"),
        ("/v1/admin/tenants/t", {"tenant_set": "missing"}, "tenant_set"),
        ("/v1/admin/tenants/t", {"tenant_set": "retail", "senders": []}, "senders"),
        ("/v1/admin/tenants/acme/senders/ABC", {"type": "pigeon"}, "type"),
        ("/v1/admin/tenants/acme/senders/12", {"type": "short_code"}, "address"),
        ("/v1/admin/gateways/g", {"kind": "http"}, "url"),
        ("/v1/admin/destinations/D", {"gateway": "sim", "rate": 0}, "rate"),
        ("/v1/admin/destinations/D", {"gateway": "missing", "rate": 5}, "gateway"),
        ("/v1/admin/destinations/D", {"gateway": "sim", "rate": 5, "allocations": []}, "allocations"),
        ("/v1/admin/destinations/US-SC/allocations/retail", {"weight": 1, "rate": 2}, "weight"),
        ("/v1/admin/destinations/US-SC/allocations/missing", {"weight": 1}, "tenant_set"),
        ("/v1/admin/routes", {"routes": [{"prefix": "+1", "sender_type": "long_code"}]}, "routes[0].destination"),
        ("/v1/admin/routes", {"routes": [{"prefix": "1", "sender_type": "long_code", "destination": "GB"}]}, "prefix"),
    ],
)
async def test_bad_admin_input_names_the_field(api, path, body, field):
    response = await api.client.put(path, json=body, headers=api.admin)
    error = (await response.json())["error"]
    assert response.status == 400, error
    assert error["code"] == "invalid_request" and error["details"]["field"] == field


async def test_missing_parents_are_404(api):
    response = await api.client.put(
        "/v1/admin/tenants/nope/senders/ABC", json={"type": "alphanumeric"}, headers=api.admin
    )
    assert response.status == 404
    response = await api.client.put(
        "/v1/admin/destinations/NOPE/allocations/retail", json={"weight": 1}, headers=api.admin
    )
    assert response.status == 404


async def test_key_rotation_and_revocation(api):
    old = api.tenant("acme")
    body = {"to": "+15551234567", "body": "hi"}
    created = await api.client.post("/v1/admin/tenants/acme/keys", headers=api.admin)
    assert created.status == 201
    new_key = await created.json()
    new = {"Authorization": f"Bearer {new_key['api_key']}"}
    assert (await api.client.post("/v1/messages", json=body, headers=old)).status == 202  # the old key still works
    assert (await api.client.post("/v1/messages", json=body, headers=new)).status == 202
    keys = (await (await api.client.get("/v1/admin/tenants/acme", headers=api.admin)).json())["api_keys"]
    assert len(keys) == 2 and all("api_key" not in key and "key_hash" not in key for key in keys)
    revoked = await api.client.post(f"/v1/admin/tenants/acme/keys/{keys[0]['id']}/revoke", headers=api.admin)
    assert revoked.status == 200 and (await revoked.json())["revoked_at"] is not None
    assert (await api.client.post("/v1/messages", json=body, headers=old)).status == 401
    assert (await api.client.post("/v1/messages", json=body, headers=new)).status == 202


async def test_admin_token(api, conn, dsn):
    assert (await api.client.get("/v1/admin/routes")).status == 401
    wrong = {"Authorization": "Bearer not-the-admin-token"}
    response = await api.client.get("/v1/admin/routes", headers=wrong)
    assert response.status == 403
    response = await api.client.put("/v1/admin/tenant-sets/x", data="{", headers={**api.admin, **JSON})
    assert response.status == 400


async def test_routes_put_needs_the_table_and_numbers_must_be_finite(api):
    response = await api.client.put("/v1/admin/routes", json={}, headers=api.admin)
    assert response.status == 400 and (await response.json())["error"]["details"]["field"] == "routes"
    assert len((await (await api.client.get("/v1/admin/routes", headers=api.admin)).json())["routes"]) == 5
    for raw in (b'{"weight": NaN}', b'{"weight": Infinity}', b'{"weight": 1e300}'):
        response = await api.client.put("/v1/admin/tenant-sets/x", data=raw, headers={**api.admin, **JSON})
        assert response.status == 400, raw
    response = await api.client.get("/v1/admin/tenants/x", headers={"Authorization": "Bearer t\xff\xfe"})
    assert response.status == 403


async def test_receipts_need_the_gateways_token(api):
    receipt = {"id": "1", "status": "delivered"}
    # every gateway has a token (made up when the configuration names none): a receipt without one is refused
    assert (await api.client.post("/v1/gateways/sim/receipts", json=receipt)).status == 401
    assert (await api.client.post("/v1/gateways/nope/receipts", json=receipt)).status == 401
    assert "receipts_token" not in (await (await api.client.get("/v1/admin/gateways/sim", headers=api.admin)).json())
    gateway = {"kind": "simulator", "url": "http://127.0.0.1:9/messages", "receipts_token": "r" * 32}
    stored = await _put(api, "/v1/admin/gateways/sim", gateway, 200)
    assert "receipts_token" not in stored  # the operator's own: not echoed
    assert (await api.client.post("/v1/gateways/sim/receipts", json=receipt)).status == 401
    wrong = {"Authorization": "Bearer " + "x" * 32}
    assert (await api.client.post("/v1/gateways/sim/receipts", json=receipt, headers=wrong)).status == 403
    right = {"Authorization": "Bearer " + "r" * 32}
    response = await api.client.post("/v1/gateways/sim/receipts", json=receipt, headers=right)
    assert response.status == 404 and (await response.json())["error"]["details"]["field"] == "id"
    short = {**gateway, "receipts_token": "short"}
    response = await api.client.put("/v1/admin/gateways/sim", json=short, headers=api.admin)
    assert response.status == 400 and (await response.json())["error"]["details"]["field"] == "receipts_token"
