"""Admin endpoints (SPEC §5), behind the admin token: idempotent PUTs (201 when created, 200 when
updated or unchanged), GET and DELETE of tenant sets, tenants (with API keys), senders, gateways,
destinations, allocations and the routing table, and the queue scores. Each runs db/admin.py (the same
code as `fairlane apply`) in a worker thread on its own connection."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from db import admin, configuration
from service import requests
from service.api_json import dumps
from service.auth import KEYS, require_admin
from service.requests import invalid
from service.state import ADMIN_POOL

Handler = Callable[[web.Request], Awaitable[web.Response]]


async def _run(request: web.Request, work: Callable[[admin.Connection], Any]) -> Any:
    require_admin(request)
    for name, value in request.match_info.items():
        if not configuration.is_plain_text(value) or len(value) > 200:
            raise invalid(name, None, f"{name} must be at most 200 characters, without NUL or lone surrogates")
    return await asyncio.to_thread(admin.run, request.app[ADMIN_POOL], work)


async def _body(request: web.Request, name_field: str, name: str) -> configuration.Reader:
    """The PUT body as a configuration reader, the entity's name taken from the path."""
    require_admin(request)
    body = await requests.json_object(request)
    if name_field in body:
        raise invalid(name_field, body[name_field], f"{name_field} comes from the path; remove it from the body")
    return configuration.read({**body, name_field: name})


def _put(entity: dict[str, Any], created: bool) -> web.Response:
    return web.json_response(entity, status=201 if created else 200, dumps=dumps)


def _json(value: Any) -> web.Response:
    return web.json_response(value, dumps=dumps)


def _deleted() -> web.Response:
    return web.Response(status=204)


# --- tenant sets ---------------------------------------------------------------------------------------


async def put_tenant_set(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    value = configuration.tenant_set_from(await _body(request, "name", name))
    return _put(*await _run(request, lambda c: admin.put_tenant_set(c, value)))


async def get_tenant_set(request: web.Request) -> web.Response:
    return _json(await _run(request, lambda c: admin.tenant_set(c, request.match_info["name"])))


async def delete_tenant_set(request: web.Request) -> web.Response:
    await _run(request, lambda c: admin.delete_tenant_set(c, request.match_info["name"]))
    return _deleted()


# --- tenants, keys, senders ----------------------------------------------------------------------------


async def put_tenant(request: web.Request) -> web.Response:
    reader = await _body(request, "name", request.match_info["name"])
    requests.only(reader.data, ("name", "tenant_set", "weight", "status_callback"))
    value = configuration.tenant_from(reader)
    return _put(*await _run(request, lambda c: admin.put_tenant(c, value)))


async def get_tenant(request: web.Request) -> web.Response:
    return _json(await _run(request, lambda c: admin.tenant(c, request.match_info["name"])))


async def delete_tenant(request: web.Request) -> web.Response:
    await _run(request, lambda c: admin.delete_tenant(c, request.match_info["name"]))
    request.app[KEYS].clear()
    return _deleted()


async def new_key(request: web.Request) -> web.Response:
    entity = await _run(request, lambda c: admin.new_api_key(c, request.match_info["name"]))
    return web.json_response(entity, status=201, dumps=dumps)


async def revoke_key(request: web.Request) -> web.Response:
    key_id = requests.identifier(request.match_info["key_id"])
    if key_id is None:
        raise invalid("key_id", request.match_info["key_id"], "key_id must be an API key's id")
    revoked = await _run(request, lambda c: admin.revoke_api_key(c, request.match_info["name"], key_id))
    request.app[KEYS].clear()
    return _json(revoked)


async def put_sender(request: web.Request) -> web.Response:
    tenant = request.match_info["name"]
    value = configuration.sender_from(await _body(request, "address", request.match_info["sender"]))
    return _put(*await _run(request, lambda c: admin.put_sender(c, tenant, value)))


async def get_sender(request: web.Request) -> web.Response:
    info = request.match_info
    return _json(await _run(request, lambda c: admin.sender(c, info["name"], info["sender"])))


async def delete_sender(request: web.Request) -> web.Response:
    info = request.match_info
    await _run(request, lambda c: admin.delete_sender(c, info["name"], info["sender"]))
    return _deleted()


# --- gateways, destinations, allocations, routes, queues -----------------------------------------------


async def put_gateway(request: web.Request) -> web.Response:
    value = configuration.gateway_from(await _body(request, "name", request.match_info["name"]))
    return _put(*await _run(request, lambda c: admin.put_gateway(c, value)))


async def get_gateway(request: web.Request) -> web.Response:
    return _json(await _run(request, lambda c: admin.gateway(c, request.match_info["name"])))


async def delete_gateway(request: web.Request) -> web.Response:
    await _run(request, lambda c: admin.delete_gateway(c, request.match_info["name"]))
    return _deleted()


async def put_destination(request: web.Request) -> web.Response:
    reader = await _body(request, "code", request.match_info["code"])
    requests.only(reader.data, ("code", "gateway", "rate", "burst", "max_drain_seconds", "default_validity_seconds"))
    value = configuration.destination_from(reader, with_allocations=False)
    return _put(*await _run(request, lambda c: admin.put_destination(c, value)))


async def get_destination(request: web.Request) -> web.Response:
    return _json(await _run(request, lambda c: admin.destination(c, request.match_info["code"])))


async def delete_destination(request: web.Request) -> web.Response:
    await _run(request, lambda c: admin.delete_destination(c, request.match_info["code"]))
    return _deleted()


async def put_allocation(request: web.Request) -> web.Response:
    code = request.match_info["code"]
    value = configuration.allocation_from(await _body(request, "tenant_set", request.match_info["tenant_set"]))
    return _put(*await _run(request, lambda c: admin.put_allocation(c, code, value)))


async def get_allocation(request: web.Request) -> web.Response:
    info = request.match_info
    return _json(await _run(request, lambda c: admin.allocation(c, info["code"], info["tenant_set"])))


async def delete_allocation(request: web.Request) -> web.Response:
    info = request.match_info
    await _run(request, lambda c: admin.delete_allocation(c, info["code"], info["tenant_set"]))
    return _deleted()


async def put_routes(request: web.Request) -> web.Response:
    require_admin(request)
    body = await requests.json_object(request)
    if "routes" not in body:
        raise invalid("routes", None, "routes is required: the whole routing table (an empty list removes it)")
    reader = configuration.read(body)
    values = tuple(configuration.route_from(r) for r in reader.tables("routes"))
    reader.done()
    return _json({"routes": await _run(request, lambda c: admin.put_routes(c, values))})


async def get_routes(request: web.Request) -> web.Response:
    return _json({"routes": await _run(request, admin.routes)})


async def get_queues(request: web.Request) -> web.Response:
    requests.only(request.query, ("destination",))
    destination = requests.query_text(request, "destination")
    return _json({"queues": await _run(request, lambda c: admin.queue_scores(c, destination))})


def add_routes(router: web.UrlDispatcher) -> None:
    resources: list[tuple[str, Handler | None, Handler, Handler | None]] = [
        ("/v1/admin/tenant-sets/{name}", put_tenant_set, get_tenant_set, delete_tenant_set),
        ("/v1/admin/tenants/{name}", put_tenant, get_tenant, delete_tenant),
        ("/v1/admin/tenants/{name}/senders/{sender}", put_sender, get_sender, delete_sender),
        ("/v1/admin/gateways/{name}", put_gateway, get_gateway, delete_gateway),
        ("/v1/admin/destinations/{code}", put_destination, get_destination, delete_destination),
        ("/v1/admin/destinations/{code}/allocations/{tenant_set}", put_allocation, get_allocation, delete_allocation),
        ("/v1/admin/routes", put_routes, get_routes, None),
        ("/v1/admin/queues", None, get_queues, None),
    ]
    for path, put, get, delete in resources:
        resource = router.add_resource(path)
        resource.add_route("GET", get)
        if put is not None:
            resource.add_route("PUT", put)
        if delete is not None:
            resource.add_route("DELETE", delete)
    router.add_post("/v1/admin/tenants/{name}/keys", new_key)
    router.add_post("/v1/admin/tenants/{name}/keys/{key_id}/revoke", revoke_key)
