"""The HTTP API (aiohttp, SPEC §5): `create_app(settings)` builds the application from the route table
(service/api/routes), with its middlewares (service/api/middlewares.py) and its resources as cleanup
contexts: the asyncpg pool and the group-commit submitter, and the psycopg pool of the admin side."""

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from db import admin, migrate, pool
from service.api import openapi
from service.api.auth import GATEWAY_TOKENS, KEYS, LIMITER, GatewayTokens, KeyCache, RateLimiter
from service.api.metrics import ApiMetrics
from service.api.middlewares import errors, measured
from service.api.routes import ROUTES
from service.api.routing import add_routes
from service.api.state import (
    ADMIN_POOL,
    BATCH_SLOTS,
    HEAD_REVISION,
    METRICS,
    OPENAPI,
    POOL,
    SETTINGS,
    SUBMITTER,
    ApiSettings,
)
from service.api.submitter import Submitter, TenantSlots


def create_app(settings: ApiSettings) -> web.Application:
    app = web.Application(middlewares=[measured, errors], client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[HEAD_REVISION] = migrate.head_revision()
    app[METRICS] = ApiMetrics()
    app[LIMITER] = RateLimiter(settings.tenant_rate, burst=settings.tenant_rate * 2)
    app[KEYS] = KeyCache()
    app[GATEWAY_TOKENS] = GatewayTokens()
    app[BATCH_SLOTS] = TenantSlots()
    app[OPENAPI] = openapi.document(ROUTES)

    async def database(app: web.Application) -> AsyncIterator[None]:
        # a 202 (or a receipt's answer) only after the commit is on disk, whatever the server's default
        app[POOL] = await pool.create(
            settings.dsn,
            min_size=2,
            max_size=10,
            statement_timeout=15.0,
            acquire_timeout=5.0,
            server_settings=pool.DURABLE,
        )
        app[SUBMITTER] = Submitter(app[POOL])
        app[ADMIN_POOL] = await asyncio.to_thread(
            admin.open_pool, settings.dsn, statement_timeout=15.0, acquire_timeout=5.0
        )
        yield
        await app[SUBMITTER].close()
        await app[POOL].close()
        await asyncio.to_thread(app[ADMIN_POOL].close)

    app.cleanup_ctx.append(database)
    add_routes(app.router, ROUTES)
    return app
