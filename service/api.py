"""The HTTP API (aiohttp, SPEC §5): the app factory, the error middleware, authentication, health,
readiness, metrics and the OpenAPI document. Tenant endpoints live in service/tenant_routes.py, admin
endpoints in service/admin_routes.py, delivery receipts in service/receipt_routes.py."""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from db import admin, health, migrate, pool
from db.configuration import ConfigError
from db.errors import UNAVAILABLE, FairlaneError, translate
from service import admin_routes, dashboard, openapi, receipt_routes, tenant_routes
from service.api_json import HTTP_STATUS, dumps, error_json
from service.auth import KEYS, LIMITER, KeyCache, RateLimiter, require_admin
from service.metrics import ApiMetrics
from service.state import ADMIN_POOL, METRICS, POOL, SETTINGS, SUBMITTER, ApiSettings
from service.submitter import Submitter

logger = logging.getLogger(__name__)
HEAD_REVISION = web.AppKey("head_revision", str)


def error_response(error: FairlaneError) -> web.Response:
    body = error_json(error)
    response = web.Response(
        status=HTTP_STATUS.get(error.code, 400), text=dumps({"error": body}), content_type="application/json"
    )
    retry_after = body["details"].get("retry_after_seconds")
    if response.status in (429, 503):
        response.headers["Retry-After"] = str(max(1, int(retry_after or 1)))
    return response


def http_error(error: web.HTTPException) -> FairlaneError:
    code = {
        401: "unauthorized",
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
        415: "unsupported_media_type",
    }.get(error.status, "invalid_request")
    return FairlaneError(code, error.reason if error.status != 413 else "the body is too large")


@web.middleware
async def measured(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Request latency by route; outermost, so it sees the status the error middleware chose."""
    started = time.perf_counter()
    response = await handler(request)
    route = request.match_info.route.resource
    request.app[METRICS].requests.labels(
        method=request.method, route=route.canonical if route else "unmatched", status=str(response.status)
    ).observe(time.perf_counter() - started)
    return response


@web.middleware
async def errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every failure becomes a JSON error body with a precise code; never a stack trace."""
    try:
        with translate():  # errors of the database's rules that a handler let through
            return await handler(request)
    except FairlaneError as error:
        return error_response(error)
    except ConfigError as error:
        return error_response(FairlaneError("invalid_request", str(error), field=error.field))
    except web.HTTPException as error:
        if error.status < 400:
            raise
        response = error_response(http_error(error))
        if "Allow" in error.headers:
            response.headers["Allow"] = error.headers["Allow"]
        return response
    except UNAVAILABLE as error:
        logger.warning("database unavailable", extra={"path": request.path, "error": type(error).__name__})
        return error_response(FairlaneError("unavailable", "the database is unavailable; retry", retryable=True))
    except Exception:
        logger.exception("request failed", extra={"path": request.path})
        return error_response(FairlaneError("internal", "internal error", retryable=True))


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the database answers and its schema is at the migrations' head."""
    async with request.app[POOL].acquire(timeout=5) as connection:
        revision = await health.revision(connection)
    head = request.app[HEAD_REVISION]
    if revision != head:
        raise FairlaneError("unavailable", f"the database is at revision {revision}, not {head}", retryable=True)
    return web.json_response({"status": "ready", "revision": revision})


async def metrics(request: web.Request) -> web.Response:
    require_admin(request)  # tenant names and rates are operators' business (Prometheus: a bearer token)
    body = await request.app[METRICS].render(request.app[POOL])
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


async def openapi_document(request: web.Request) -> web.Response:
    return web.json_response(openapi.DOCUMENT)


def create_app(settings: ApiSettings) -> web.Application:
    app = web.Application(middlewares=[measured, errors], client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[HEAD_REVISION] = migrate.head_revision()
    app[METRICS] = ApiMetrics()
    app[LIMITER] = RateLimiter(settings.tenant_rate)
    app[KEYS] = KeyCache()

    async def database(app: web.Application) -> AsyncIterator[None]:
        app[POOL] = await pool.create(settings.dsn, min_size=2, max_size=10)
        app[SUBMITTER] = Submitter(app[POOL])
        app[ADMIN_POOL] = await asyncio.to_thread(admin.open_pool, settings.dsn)
        yield
        await app[SUBMITTER].close()
        await app[POOL].close()
        await asyncio.to_thread(app[ADMIN_POOL].close)

    app.cleanup_ctx.append(database)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi_document)
    tenant_routes.add_routes(app.router)
    admin_routes.add_routes(app.router)
    receipt_routes.add_routes(app.router)
    dashboard.add_routes(app.router)
    return app
