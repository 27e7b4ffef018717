"""Admin endpoints (SPEC §5), behind the admin token: idempotent PUTs (201 when created, 200 when
updated or unchanged), GET and DELETE of tenant sets, tenants (with API keys), senders, gateways,
destinations, allocations and the routing table, and the queue scores. Each runs db/admin.py (the same
code as `fairlane apply`) in a worker thread on its own connection."""

import asyncio
import re
from collections.abc import Callable
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from db import admin, reports
from service.api import bodies
from service.api.auth import GATEWAY_TOKENS, KEYS, require_admin
from service.api.routing import Parameter, Route
from service.api.state import ADMIN_POOL
from service.model.configuration import (
    Allocation,
    AllocationEntity,
    ApiKey,
    Callbacks,
    CallbacksEntity,
    DestinationEntity,
    DestinationFields,
    Gateway,
    GatewayEntity,
    Levels,
    LevelsEntity,
    Limits,
    LimitsEntity,
    Retention,
    RetentionEntity,
    Routes,
    RoutesEntity,
    Sender,
    SenderEntity,
    SigningSecretRotation,
    TenantEntity,
    TenantFields,
    TenantSet,
    TenantSetEntity,
)
from service.model.fields import format_duration
from service.model.reports import Dashboard, QueueScores


async def _run(request: web.Request, work: Callable[[admin.Connection], Any]) -> Any:
    require_admin(request)
    for name in request.match_info:
        bodies.path_text(request, name)
    return await asyncio.to_thread(admin.run, request.app[ADMIN_POOL], work)


def _resource(
    path: str,
    what: str,
    entity: type[BaseModel],
    body: type[BaseModel],
    db_functions: tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]],
    forget: Callable[[web.Application, str], None] | None = None,
) -> list[Route]:
    """PUT, GET and DELETE of one kind of configuration entity, named by the path's parameters: the last names
    the entity (it fills the body's field of the same meaning), the others its parents. `db_functions` are
    db/admin.py's read(connection, *names), put(connection, *parents, value) -> (entity, created) and
    delete(connection, *names); `forget(app, name)` drops what this process caches of the entity once it is
    changed or deleted."""
    read, write, remove = db_functions
    names = re.findall(r"{(\w+)}", path)
    name_field = {"name": "name", "sender": "address", "code": "code", "tenant_set": "tenant_set"}[names[-1]]

    async def put(request: web.Request) -> web.Response:
        require_admin(request)
        given = await bodies.json_object(request)
        if name_field in given:
            raise bodies.invalid(
                name_field, given[name_field], f"{name_field} comes from the path; remove it from the body"
            )
        value = bodies.shape(body, {**given, name_field: request.match_info[names[-1]]}).model_dump()
        parents = [request.match_info[name] for name in names[:-1]]
        stored, created = await _run(request, lambda c: write(c, *parents, value))
        if forget is not None:
            forget(request.app, request.match_info[names[-1]])
        return bodies.respond(entity.model_validate(stored), 201 if created else 200)

    async def get(request: web.Request) -> web.Response:
        keys = [request.match_info[name] for name in names]
        return bodies.respond(entity.model_validate(await _run(request, lambda c: read(c, *keys))))

    async def delete(request: web.Request) -> web.Response:
        keys = [request.match_info[name] for name in names]
        await _run(request, lambda c: remove(c, *keys))
        if forget is not None:
            forget(request.app, keys[-1])
        return web.Response(status=204)

    return [
        Route("PUT", path, put, f"Create or replace {what}", "admin", {200: entity, 201: entity},
              (400, 401, 403, 404, 413, 415), body=body, path_fields=(name_field,)),
        Route("GET", path, get, f"Read {what}", "admin", {200: entity}, (400, 401, 403, 404)),
        Route("DELETE", path, delete, f"Delete {what}", "admin", {204: None}, (400, 401, 403, 404, 409)),
    ]  # fmt: skip


async def new_key(request: web.Request) -> web.Response:
    entity = await _run(request, lambda c: admin.new_api_key(c, request.match_info["name"]))
    return bodies.respond(ApiKey.model_validate(entity), 201)


async def revoke_key(request: web.Request) -> web.Response:
    key_id = bodies.identifier(request.match_info["key_id"])
    if key_id is None:
        raise bodies.invalid("key_id", request.match_info["key_id"], "key_id must be an API key's id")
    revoked = await _run(request, lambda c: admin.revoke_api_key(c, request.match_info["name"], key_id))
    request.app[KEYS].forget_tenant(request.match_info["name"])  # the revoked key stops working here at once
    return bodies.respond(ApiKey.model_validate(revoked))


async def rotate_signing_secret(request: web.Request) -> web.Response:
    require_admin(request)
    has_body = bool(request.content_length) or request.headers.get("Transfer-Encoding", "") == "chunked"
    given = await bodies.read(request, SigningSecretRotation) if has_body else SigningSecretRotation()
    name = request.match_info["name"]
    rotated = await _run(request, lambda c: admin.rotate_signing_secret(c, name, given.grace_seconds))
    return bodies.respond(TenantEntity.model_validate(rotated))


async def rotate_receipts_token(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    rotated = await _run(request, lambda c: admin.rotate_receipts_token(c, name))
    request.app[GATEWAY_TOKENS].forget(name)  # the new token counts here at once
    return bodies.respond(GatewayEntity.model_validate(rotated))


async def get_callbacks(request: web.Request) -> web.Response:
    return bodies.respond(CallbacksEntity.model_validate(await _run(request, admin.callbacks)))


async def put_callbacks(request: web.Request) -> web.Response:
    require_admin(request)
    value = (await bodies.read(request, Callbacks)).model_dump()
    return bodies.respond(CallbacksEntity.model_validate(await _run(request, lambda c: admin.put_callbacks(c, value))))


async def get_limits(request: web.Request) -> web.Response:
    return bodies.respond(LimitsEntity.model_validate(await _run(request, admin.limits)))


async def put_limits(request: web.Request) -> web.Response:
    require_admin(request)
    value = (await bodies.read(request, Limits)).model_dump()
    return bodies.respond(LimitsEntity.model_validate(await _run(request, lambda c: admin.put_limits(c, value))))


async def get_levels(request: web.Request) -> web.Response:
    return bodies.respond(LevelsEntity.model_validate(await _run(request, admin.levels)))


async def put_levels(request: web.Request) -> web.Response:
    require_admin(request)
    value = (await bodies.read(request, Levels)).model_dump()
    return bodies.respond(LevelsEntity.model_validate(await _run(request, lambda c: admin.put_levels(c, value))))


async def put_routes(request: web.Request) -> web.Response:
    require_admin(request)
    values = (await bodies.read(request, Routes)).model_dump()["routes"]
    return bodies.respond(RoutesEntity(routes=await _run(request, lambda c: admin.put_routes(c, values))))


async def get_routes(request: web.Request) -> web.Response:
    return bodies.respond(RoutesEntity(routes=await _run(request, admin.routes)))


async def get_queues(request: web.Request) -> web.Response:
    bodies.only(request.query, ("destination",))
    destination = bodies.query_text(request, "destination")
    return bodies.respond(QueueScores(queues=await _run(request, lambda c: admin.queue_scores(c, destination))))


def _retention(seconds: int) -> web.Response:
    return bodies.respond(RetentionEntity(finished_messages=format_duration(seconds), seconds=seconds))


async def get_retention(request: web.Request) -> web.Response:
    return _retention(await _run(request, admin.retention))


async def put_retention(request: web.Request) -> web.Response:
    require_admin(request)
    value = (await bodies.read(request, Retention)).model_dump()
    return _retention(await _run(request, lambda c: admin.put_retention(c, value)))


async def get_dashboard(request: web.Request) -> web.Response:
    reading = await _run(request, reports.dashboard)
    return bodies.respond(Dashboard.model_validate(reading), headers={"Cache-Control": "no-store"})


ROUTES: list[Route] = [
    *_resource(
        "/v1/admin/tenant-sets/{name}", "a tenant set", TenantSetEntity, TenantSet,
        (admin.tenant_set, admin.put_tenant_set, admin.delete_tenant_set),
    ),
    *_resource(
        "/v1/admin/tenants/{name}", "a tenant", TenantEntity, TenantFields,
        (admin.tenant, admin.put_tenant, admin.delete_tenant),
        lambda app, name: app[KEYS].forget_tenant(name),  # a deleted tenant's keys stop working here at once
    ),
    Route("POST", "/v1/admin/tenants/{name}/keys", new_key, "Add an API key (earlier keys keep working until revoked)",
          "admin", {201: ApiKey}, (401, 403, 404)),
    Route("POST", "/v1/admin/tenants/{name}/keys/{key_id}/revoke", revoke_key, "Revoke an API key", "admin",
          {200: ApiKey}, (400, 401, 403, 404)),
    Route("POST", "/v1/admin/tenants/{name}/signing-secret/rotate", rotate_signing_secret,
          "A new signing secret for the tenant's callbacks (shown once); the previous one keeps signing them too for "
          "grace_seconds", "admin", {200: TenantEntity}, (400, 401, 403, 404, 413, 415), body=SigningSecretRotation),
    *_resource(
        "/v1/admin/tenants/{name}/senders/{sender}", "a sender", SenderEntity, Sender,
        (admin.sender, admin.put_sender, admin.delete_sender),
    ),
    *_resource(
        "/v1/admin/gateways/{name}", "a gateway", GatewayEntity, Gateway,
        (admin.gateway, admin.put_gateway, admin.delete_gateway),
        lambda app, name: app[GATEWAY_TOKENS].forget(name),  # a new receipts token counts here at once
    ),
    Route("POST", "/v1/admin/gateways/{name}/receipts-token/rotate", rotate_receipts_token,
          "A new receipts token for the gateway, made up and shown once (the old one stops working at once)", "admin",
          {200: GatewayEntity}, (400, 401, 403, 404)),
    *_resource(
        "/v1/admin/destinations/{code}", "a destination", DestinationEntity, DestinationFields,
        (admin.destination, admin.put_destination, admin.delete_destination),
    ),
    *_resource(
        "/v1/admin/destinations/{code}/allocations/{tenant_set}",
        "a tenant set's allocation of a destination (a weight or an absolute rate)", AllocationEntity, Allocation,
        (admin.allocation, admin.put_allocation, admin.delete_allocation),
    ),
    Route("PUT", "/v1/admin/routes", put_routes, "Replace the routing table", "admin", {200: RoutesEntity},
          (400, 401, 403, 413, 415), body=Routes),
    Route("GET", "/v1/admin/routes", get_routes, "The routing table", "admin", {200: RoutesEntity}, (401, 403)),
    Route("PUT", "/v1/admin/callbacks", put_callbacks,
          "Where status callbacks may go beyond public https URLs (allow_networks, allow_http)", "admin",
          {200: CallbacksEntity}, (400, 401, 403, 413, 415), body=Callbacks),
    Route("GET", "/v1/admin/callbacks", get_callbacks, "Where status callbacks may go beyond public https URLs",
          "admin", {200: CallbacksEntity}, (401, 403)),
    Route("PUT", "/v1/admin/limits", put_limits, "Per-tenant limits (scheduled_per_tenant)", "admin",
          {200: LimitsEntity}, (400, 401, 403, 413, 415), body=Limits),
    Route("GET", "/v1/admin/limits", get_limits, "Per-tenant limits", "admin", {200: LimitsEntity}, (401, 403)),
    Route("PUT", "/v1/admin/levels", put_levels, "Levels of service (minimum_share of the lower levels)", "admin",
          {200: LevelsEntity}, (400, 401, 403, 413, 415), body=Levels),
    Route("GET", "/v1/admin/levels", get_levels, "Levels of service", "admin", {200: LevelsEntity}, (401, 403)),
    Route("PUT", "/v1/admin/retention", put_retention, "How long finished messages and their events are kept",
          "admin", {200: RetentionEntity}, (400, 401, 403, 413, 415), body=Retention),
    Route("GET", "/v1/admin/retention", get_retention, "How long finished messages and their events are kept",
          "admin", {200: RetentionEntity}, (401, 403)),
    Route("GET", "/v1/admin/queues", get_queues, "Queue scores (fairlane.queue_scores), optionally of one destination",
          "admin", {200: QueueScores}, (400, 401, 403),
          parameters=(Parameter("destination", "query", {"type": "string"}),)),
    Route("GET", "/v1/admin/dashboard", get_dashboard,
          "What the dashboard shows: every destination's load (fairlane.destination_load) with its queues' scores "
          "(fairlane.queue_scores), read in one snapshot", "admin", {200: Dashboard}, (401, 403)),
]  # fmt: skip
