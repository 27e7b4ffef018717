"""Tenant endpoints (SPEC §5): send one message or a batch, read messages and their events, cancel, and
see one's own queues. A tenant only ever sees its own rows: every query is scoped by its id."""

import dataclasses
from typing import Any

from aiohttp import web

from db import messages
from db.configuration import is_plain_text
from db.errors import FairlaneError
from db.messages import Submitted
from service import requests
from service.api_json import HTTP_STATUS, STATUSES, error_json, event_json, message_json
from service.auth import tenant_of
from service.requests import invalid
from service.state import METRICS, POOL, SUBMITTER

# the database names submission fields as in fairlane.outbox; the API as in its JSON body
HTTP_FIELDS = {"recipient": "to", "sender": "from"}


def _http_error(error: FairlaneError, path: str = "") -> FairlaneError:
    if error.field is None:
        return error
    return dataclasses.replace(error, field=path + HTTP_FIELDS.get(error.field, error.field))


def _count(request: web.Request, tenant: str, result: Submitted) -> None:
    if result.error is not None:
        request.app[METRICS].rejected.labels(tenant=tenant, code=result.error.code).inc()
    elif result.message is not None and not result.replayed:
        request.app[METRICS].accepted.labels(tenant=tenant, destination=result.message["destination"]).inc()


async def send(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    body = await requests.json_object(request)
    key = request.headers.get("Idempotency-Key")
    if key is not None and (not key or len(key) > 255 or not key.isprintable() or not is_plain_text(key)):
        raise invalid("Idempotency-Key", None, "the Idempotency-Key header must have 1 to 255 printable characters")
    try:
        submission = requests.submission(tenant.name, body, key)
    except FairlaneError as error:
        request.app[METRICS].rejected.labels(tenant=tenant.name, code=error.code).inc()
        raise
    [result] = await request.app[SUBMITTER].submit([submission])
    _count(request, tenant.name, result)
    if result.error is not None:
        raise _http_error(result.error)
    assert result.message is not None
    headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
    return web.json_response(message_json(result.message), status=202, headers=headers)


async def send_batch(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    if "Idempotency-Key" in request.headers:
        raise invalid(
            "Idempotency-Key", None, "a batch takes an idempotency_key per message, not an Idempotency-Key header"
        )
    items = requests.batch(await requests.json_object(request))
    results: list[dict[str, Any] | None] = [None] * len(items)
    valid: list[tuple[int, dict[str, Any]]] = []
    for index, item in enumerate(items):
        path = f"messages[{index}]."
        try:
            if not isinstance(item, dict):
                raise invalid(path[:-1], None, f"{path[:-1]} must be a message object")
            valid.append((index, requests.submission(tenant.name, item, None, path=path)))
        except FairlaneError as error:
            request.app[METRICS].rejected.labels(tenant=tenant.name, code=error.code).inc()
            results[index] = {"index": index, "status": HTTP_STATUS[error.code], "error": error_json(error)}
    submitted = await request.app[SUBMITTER].submit([submission for _, submission in valid]) if valid else []
    for (index, _), result in zip(valid, submitted, strict=True):
        _count(request, tenant.name, result)
        if result.error is not None:
            results[index] = {
                "index": index,
                "status": HTTP_STATUS[result.error.code],
                "error": error_json(_http_error(result.error, f"messages[{index}].")),
            }
        else:
            assert result.message is not None
            results[index] = {
                "index": index,
                "status": 202,
                "replayed": result.replayed,
                "message": message_json(result.message),
            }
    accepted = sum(1 for result in results if result is not None and "message" in result)
    return web.json_response({"accepted": accepted, "rejected": len(items) - accepted, "results": results})


def _message_id(request: web.Request) -> int:
    message_id = requests.identifier(request.match_info["id"])
    if message_id is None:
        raise FairlaneError("not_found", f"message {request.match_info['id'][:40]!r} not found")
    return message_id


async def get_message(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    message_id = _message_id(request)
    async with request.app[POOL].acquire() as connection:
        message = await messages.message(connection, tenant.id, message_id)
    if message is None:
        raise FairlaneError("not_found", f"message {message_id} not found")
    return web.json_response(message_json(message))


async def list_messages(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    requests.only(request.query, ("status", "destination", "page_size", "page_token"))
    status = requests.query_text(request, "status")
    if status is not None and status not in STATUSES:
        raise invalid("status", status, f"status must be one of {', '.join(STATUSES)}")
    destination = requests.query_text(request, "destination")
    page_size = requests.query_integer(request, "page_size", 50, 1, 500)
    before = 2**63 - 1
    token = requests.query_text(request, "page_token")
    if token is not None:
        parsed = requests.identifier(token)
        if parsed is None:
            raise invalid("page_token", token, "page_token is not one this API returned")
        before = parsed
    async with request.app[POOL].acquire() as connection:
        page = await messages.messages(
            connection, tenant.id, status=status, destination=destination, limit=page_size + 1, before_id=before
        )
    more = len(page) > page_size
    page = page[:page_size]
    return web.json_response(
        {
            "messages": [message_json(message) for message in page],
            "next_page_token": str(page[-1]["id"]) if more else None,
        }
    )


async def message_events(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    message_id = _message_id(request)
    async with request.app[POOL].acquire() as connection:
        if await messages.message(connection, tenant.id, message_id) is None:
            raise FairlaneError("not_found", f"message {message_id} not found")
        events = await messages.events(connection, tenant.id, message_id)
    return web.json_response({"message_id": str(message_id), "events": [event_json(event) for event in events]})


async def cancel(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    message_id = _message_id(request)
    async with request.app[POOL].acquire() as connection:
        async with connection.transaction():
            await messages.cancel(connection, tenant.id, message_id)
        message = await messages.message(connection, tenant.id, message_id)
    assert message is not None
    return web.json_response(message_json(message))


async def queues(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    async with request.app[POOL].acquire() as connection:
        rows = await messages.queues(connection, tenant.id)
    return web.json_response({"queues": [vars(row) for row in rows]})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/v1/messages", send)
    router.add_post("/v1/messages/batch", send_batch)
    router.add_get("/v1/messages", list_messages)
    router.add_get("/v1/messages/{id}", get_message)
    router.add_get("/v1/messages/{id}/events", message_events)
    router.add_post("/v1/messages/{id}/cancel", cancel)
    router.add_get("/v1/queues", queues)
