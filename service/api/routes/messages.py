"""Tenant endpoints (SPEC §5): send one message or a batch, read messages and their events, cancel, and
see one's own queues. A tenant only ever sees its own rows: every query is scoped by its id."""

import asyncio
import dataclasses
import datetime as dt
import secrets

from aiohttp import web

from db import messages
from db.errors import FairlaneError
from db.messages import Submitted, Tenant
from service.api import bodies
from service.api.auth import tenant_of
from service.api.middlewares import error_body
from service.api.routing import Parameter, Route
from service.api.state import BATCH_SLOTS, METRICS, POOL, SUBMITTER
from service.model.errors import status_of
from service.model.fields import is_plain_text
from service.model.messages import (
    API_FIELDS,
    STATUSES,
    Accepted,
    Batch,
    BatchItem,
    BatchResults,
    Event,
    Events,
    Message,
    MessagePage,
    MessageRequest,
    Queue,
    Queues,
    Refused,
    Usage,
    UsageRow,
)


def _api_field(error: FairlaneError, path: str = "") -> FairlaneError:
    """A database error's field as the API names it (`recipient` is `to`), under `path`."""
    if error.field is None:
        return error
    return dataclasses.replace(error, field=path + API_FIELDS.get(error.field, error.field))


def _count(request: web.Request, tenant: str, result: Submitted) -> None:
    if result.error is not None:
        request.app[METRICS].rejected.labels(tenant=tenant, code=result.error.code).inc()
    elif result.message is not None and not result.replayed:
        request.app[METRICS].accepted.labels(tenant=tenant, destination=result.message["destination"]).inc()


def _idempotency_key(request: web.Request) -> str:
    """The request's Idempotency-Key, or a new one made up here: every submission carries a key, so a client
    whose answer was lost (`outcome_unknown`, a cut connection) can send it again, or look it up, safely."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return new_idempotency_key()
    if not key or len(key) > 255 or not key.isprintable() or not is_plain_text(key):
        raise bodies.invalid(
            "Idempotency-Key", None, "the Idempotency-Key header must have 1 to 255 printable characters"
        )
    return key


def new_idempotency_key() -> str:
    """A key the server makes up for a submission without one (unguessable, so never a client's)."""
    return "auto-" + secrets.token_urlsafe(18)


def _shown(result: Submitted, key: str) -> Message:
    """The message as answered, with the idempotency key it was submitted with."""
    assert result.message is not None
    return Message.model_validate({**result.message, "idempotency_key": key})


async def send(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    request.app[SUBMITTER].check_room(tenant.name)
    body = await bodies.json_object(request)
    key = _idempotency_key(request)
    try:
        submission = bodies.shape(MessageRequest, body).submission(tenant.name, key)
    except FairlaneError as error:
        request.app[METRICS].rejected.labels(tenant=tenant.name, code=error.code).inc()
        raise
    try:
        [result] = await request.app[SUBMITTER].submit(tenant.name, [submission])
    except FairlaneError as error:
        if error.code != "outcome_unknown":
            raise
        raise dataclasses.replace(
            error,
            message=f"{error.message}: send it again with Idempotency-Key {key!r}, "
            "or look it up with GET /v1/messages?idempotency_key=",
            details={**error.details, "idempotency_key": key},
        ) from None
    _count(request, tenant.name, result)
    if result.error is not None:
        raise _api_field(result.error)
    headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
    return bodies.respond(_shown(result, key), 202, headers)


async def send_batch(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    request.app[SUBMITTER].check_room(tenant.name)  # its backlog full: refused before the body is parsed
    async with request.app[BATCH_SLOTS].hold(tenant.name):  # a few of a tenant's batches at a time
        return await _send_batch(request, tenant)


async def _send_batch(request: web.Request, tenant: Tenant) -> web.Response:
    if "Idempotency-Key" in request.headers:
        raise bodies.invalid(
            "Idempotency-Key", None, "a batch takes an idempotency_key per message, not an Idempotency-Key header"
        )
    items = (await bodies.read(request, Batch)).messages
    results: list[Accepted | Refused | None] = [None] * len(items)
    valid: list[tuple[int, dict[str, object]]] = []
    for index, item in enumerate(items):
        if index and index % 100 == 0:
            await asyncio.sleep(0)  # a big batch's checks let other tenants' requests in meanwhile
        try:
            message = bodies.shape(BatchItem, item, f"messages[{index}]")
            key = new_idempotency_key() if message.idempotency_key is None else message.idempotency_key
            valid.append((index, message.submission(tenant.name, key)))
        except FairlaneError as error:
            request.app[METRICS].rejected.labels(tenant=tenant.name, code=error.code).inc()
            results[index] = Refused(index=index, status=status_of(error.code), error=error_body(error))
    submissions = [submission for _, submission in valid]
    try:
        submitted = await request.app[SUBMITTER].submit(tenant.name, submissions) if valid else []
    except FairlaneError as error:
        if error.code != "outcome_unknown":
            raise
        # every item that reached the database is unknown; the others were refused here and are again
        unknown = [{"index": index, "idempotency_key": submission["idempotency_key"]} for index, submission in valid]
        raise dataclasses.replace(
            error,
            message=f"{error.message}: send the batch again with each item's idempotency_key as listed in "
            "details.items, or look the items up with GET /v1/messages?idempotency_key=",
            details={**error.details, "items": unknown},
        ) from None
    for position, ((index, submission), result) in enumerate(zip(valid, submitted, strict=True)):
        if position and position % 100 == 0:
            await asyncio.sleep(0)  # and so do its answers
        _count(request, tenant.name, result)
        if result.error is not None:
            error = _api_field(result.error, f"messages[{index}].")
            results[index] = Refused(index=index, status=status_of(error.code), error=error_body(error))
        else:
            key = str(submission["idempotency_key"])
            results[index] = Accepted(index=index, status=202, replayed=result.replayed, message=_shown(result, key))
    answered = [result for result in results if result is not None]
    accepted = sum(1 for result in answered if isinstance(result, Accepted))
    return bodies.respond(BatchResults(accepted=accepted, rejected=len(items) - accepted, results=answered))


def _message_id(request: web.Request) -> int:
    message_id = bodies.identifier(request.match_info["id"])
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
    return bodies.respond(Message.model_validate(message))


async def list_messages(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    bodies.only(request.query, ("status", "destination", "page_size", "page_token", "idempotency_key"))
    key = bodies.query_text(request, "idempotency_key", limit=255)
    if key == "":
        raise bodies.invalid("idempotency_key", key, "idempotency_key must have 1 to 255 characters")
    if key is not None:
        return await _by_idempotency_key(request, tenant, key)
    status = bodies.query_text(request, "status")
    if status is not None and status not in STATUSES:
        raise bodies.invalid("status", status, f"status must be one of {', '.join(STATUSES)}")
    destination = bodies.query_text(request, "destination")
    page_size = bodies.query_integer(request, "page_size", 50, 1, 500)
    before = 2**63 - 1
    token = bodies.query_text(request, "page_token")
    if token is not None:
        parsed = bodies.identifier(token)
        if parsed is None:
            raise bodies.invalid("page_token", token, "page_token is not one this API returned")
        before = parsed
    async with request.app[POOL].acquire() as connection:
        page = await messages.messages(
            connection, tenant.id, status=status, destination=destination, limit=page_size + 1, before_id=before
        )
    more = len(page) > page_size
    shown = [Message.model_validate(message) for message in page[:page_size]]
    return bodies.respond(MessagePage(messages=shown, next_page_token=shown[-1].id if more else None))


async def _by_idempotency_key(request: web.Request, tenant: Tenant, key: str) -> web.Response:
    """The page holding the tenant's message submitted with `key` in the last 24 hours, or an empty page: what a
    client whose submission ended in `outcome_unknown` (or whose connection broke) reads to learn its fate."""
    for other in ("status", "destination", "page_size", "page_token"):
        if other in request.query:
            raise bodies.invalid(other, request.query[other][:100], f"{other} cannot be combined with idempotency_key")
    async with request.app[POOL].acquire() as connection:
        message = await messages.by_idempotency_key(connection, tenant.id, key)
    shown = [Message.model_validate(message)] if message is not None else []
    return bodies.respond(MessagePage(messages=shown, next_page_token=None))


async def message_events(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    message_id = _message_id(request)
    async with request.app[POOL].acquire() as connection:
        if await messages.message(connection, tenant.id, message_id) is None:
            raise FairlaneError("not_found", f"message {message_id} not found")
        events = await messages.events(connection, tenant.id, message_id)
    shown = [Event.model_validate(event) for event in events]
    return bodies.respond(Events(message_id=str(message_id), events=shown))


async def cancel(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    message_id = _message_id(request)
    async with request.app[POOL].acquire() as connection:
        async with connection.transaction():
            await messages.cancel(connection, tenant.id, message_id)
        message = await messages.message(connection, tenant.id, message_id)
    return bodies.respond(Message.model_validate(message))


def _day(request: web.Request, key: str, default: dt.date) -> dt.date:
    raw = bodies.query_text(request, key, limit=10)
    if raw is None:
        return default
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise bodies.invalid(key, raw, f"{key} must be a date such as 2026-01-31") from None


async def usage(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    bodies.only(request.query, ("from", "to"))
    last = _day(request, "to", dt.datetime.now(dt.UTC).date())
    first = _day(request, "from", last - dt.timedelta(days=30))
    if not dt.timedelta(0) <= last - first <= dt.timedelta(days=366):
        raise bodies.invalid("from", first.isoformat(), "from must be at most 366 days before to, and not after it")
    async with request.app[POOL].acquire() as connection:
        rows = await messages.usage(connection, tenant.name, first, last)
    return bodies.respond(Usage(from_=first, to=last, usage=[UsageRow.model_validate(row) for row in rows]))


async def queues(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    async with request.app[POOL].acquire() as connection:
        rows = await messages.queues(connection, tenant.id)
    return bodies.respond(Queues(queues=[Queue.model_validate(row) for row in rows]))


ROUTES = [
    Route(
        "POST",
        "/v1/messages",
        send,
        "Send a message",
        "tenant",
        {202: Message},
        (400, 401, 404, 409, 413, 415, 422, 429),
        body=MessageRequest,
        parameters=(
            Parameter(
                "Idempotency-Key",
                "header",
                {"type": "string", "minLength": 1, "maxLength": 255},
                "a repeat within 24 h answers the original message; without one, the server makes one up and "
                "answers it as the message's idempotency_key",
            ),
        ),
    ),
    Route(
        "GET",
        "/v1/messages",
        list_messages,
        "List messages, newest first",
        "tenant",
        {200: MessagePage},
        (400, 401, 429),
        parameters=(
            Parameter("status", "query", {"enum": list(STATUSES)}),
            Parameter("destination", "query", {"type": "string"}),
            Parameter("page_size", "query", {"type": "integer", "minimum": 1, "maximum": 500}),
            Parameter("page_token", "query", {"type": "string"}),
            Parameter(
                "idempotency_key",
                "query",
                {"type": "string", "minLength": 1, "maxLength": 255},
                "the message submitted with this key in the last 24 h (a page of one, or none); "
                "not combined with the other parameters",
            ),
        ),
    ),
    Route(
        "POST",
        "/v1/messages/batch",
        send_batch,
        "Send up to 1,000 messages; one result per item, in order",
        "tenant",
        {200: BatchResults},
        (400, 401, 409, 413, 415, 429),
        body=Batch,
        extra_schemas=(BatchItem,),
    ),
    Route("GET", "/v1/messages/{id}", get_message, "Read a message", "tenant", {200: Message}, (401, 404, 429)),
    Route(
        "GET",
        "/v1/messages/{id}/events",
        message_events,
        "A message's status history, oldest first",
        "tenant",
        {200: Events},
        (401, 404, 429),
    ),
    Route(
        "POST",
        "/v1/messages/{id}/cancel",
        cancel,
        "Cancel a queued or scheduled message",
        "tenant",
        {200: Message},
        (401, 404, 409, 429),
    ),
    Route("GET", "/v1/queues", queues, "The tenant's queues", "tenant", {200: Queues}, (401, 429)),
    Route(
        "GET",
        "/v1/usage",
        usage,
        "The tenant's usage per UTC day, destination, sender and status (kept after messages are pruned)",
        "tenant",
        {200: Usage},
        (400, 401, 429),
        parameters=(
            Parameter("from", "query", {"type": "string", "format": "date"}, "first day (default: 30 days before to)"),
            Parameter("to", "query", {"type": "string", "format": "date"}, "last day (default: today, UTC)"),
        ),
    ),
]
