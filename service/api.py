"""The HTTP API (aiohttp). For now: delivery receipts from gateways and health; the tenant and admin
endpoints come with the API issue."""

import json
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
from aiohttp import web

from db import dispatch
from db.errors import FairlaneError

POOL = web.AppKey("pool", asyncpg.Pool)
HTTP_STATUS = {
    "invalid_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "unknown_destination": 404,
    "not_cancelable": 409,
    "conflict": 409,
    "receipt_too_early": 409,
    "idempotency_mismatch": 422,
    "queue_overflow": 429,
    "rate_limited": 429,
}


def error_body(code: str, message: str, *, retryable: bool = False, details: dict[str, object] | None = None) -> str:
    return json.dumps({"error": {"code": code, "message": message, "retryable": retryable, "details": details or {}}})


@web.middleware
async def errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except FairlaneError as error:
        details = {"field": error.field, "value": error.value, **error.details}
        return web.Response(
            status=HTTP_STATUS.get(error.code, 400),
            text=error_body(error.code, error.message, retryable=error.retryable, details=details),
            content_type="application/json",
        )


async def receipts(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError, LookupError):
        raise FairlaneError("invalid_request", "the body is not JSON") from None
    if not isinstance(body, dict):
        raise FairlaneError("invalid_request", "the body must be a JSON object")
    message_id = body.get("id")
    if message_id is not None and not (
        isinstance(message_id, str) and message_id.isascii() and message_id.isdigit() and int(message_id) < 2**63
    ):
        raise FairlaneError(
            "invalid_request", "id must be a message id (a string of digits)", field="id", value=str(message_id)
        )
    provider_id = body.get("provider_id")
    error_code = body.get("error_code")
    status = body.get("status")
    for name, value in (("provider_id", provider_id), ("error_code", error_code), ("status", status)):
        if value is not None and (not isinstance(value, str) or "\x00" in value or len(value) > 255):
            raise FairlaneError(
                "invalid_request", f"{name} must be a string of at most 255 characters", field=name, value=str(value)
            )
    if "\x00" in request.match_info["name"]:
        raise FairlaneError("invalid_request", "bad gateway name", field="name")
    async with request.app[POOL].acquire() as connection:
        result = await dispatch.receipt(
            connection,
            request.match_info["name"],
            provider_id,
            int(message_id) if message_id else None,
            status,
            error_code,
        )
    return web.json_response({"status": result})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app(dsn: str) -> web.Application:
    app = web.Application(middlewares=[errors], client_max_size=1 << 20)

    async def pool(app: web.Application) -> AsyncIterator[None]:
        app[POOL] = await asyncpg.create_pool(dsn, min_size=1, max_size=8)
        yield
        await app[POOL].close()

    app.cleanup_ctx.append(pool)
    app.router.add_post("/v1/gateways/{name}/receipts", receipts)
    app.router.add_get("/healthz", healthz)
    return app
