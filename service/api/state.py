"""What the API's handlers share: its settings and the application keys of its resources."""

from dataclasses import dataclass
from typing import Any

import asyncpg
from aiohttp import web
from psycopg_pool import ConnectionPool

from service.api.metrics import ApiMetrics
from service.api.submitter import Submitter, TenantSlots


@dataclass(frozen=True)
class ApiSettings:
    dsn: str
    admin_token: str | None = None
    """FAIRLANE_ADMIN_TOKEN: the bearer token of /v1/admin (admin endpoints are refused without one)."""
    tenant_rate: float = 100.0
    """FAIRLANE_TENANT_RATE: requests per second per tenant and API process, bursts of twice that (0:
    unlimited)."""
    max_body_bytes: int = 16 << 20
    """Room for a batch of 1,000 messages of 1,600 characters with every character \\u-escaped."""


SETTINGS = web.AppKey("settings", ApiSettings)
POOL = web.AppKey("pool", asyncpg.Pool)
SUBMITTER = web.AppKey("submitter", Submitter)
BATCH_SLOTS = web.AppKey("batch_slots", TenantSlots)
ADMIN_POOL = web.AppKey("admin_pool", ConnectionPool)
METRICS = web.AppKey("metrics", ApiMetrics)
HEAD_REVISION = web.AppKey("head_revision", str)
OPENAPI = web.AppKey("openapi", dict[str, Any])
