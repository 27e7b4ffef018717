"""Who is calling: tenants by API key (with a per-tenant request rate), operators by the admin token."""

import hmac
import time

from aiohttp import web

from db import messages
from db.errors import FairlaneError
from db.messages import Tenant
from service.api.state import POOL, SETTINGS


class RateLimiter:
    """A token bucket per tenant in this process: rate per second, a second's worth of burst (at least
    one request)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(rate, 1.0)
        self._buckets: dict[int, tuple[float, float]] = {}

    def check(self, tenant_id: int) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic()
        tokens, at = self._buckets.get(tenant_id, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - at) * self.rate)
        if tokens < 1:
            raise FairlaneError(
                "rate_limited",
                f"more than {self.rate:g} requests per second; slow down",
                details={"retry_after_seconds": 1},
            )
        self._buckets[tenant_id] = (tokens - 1, now)


LIMITER = web.AppKey("limiter", RateLimiter)


def bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise FairlaneError("unauthorized", "an Authorization: Bearer <key> header is required")
    return token.strip()


class KeyCache:
    """Valid API keys seen in the last few seconds, so a busy tenant's requests skip the key lookup. A key
    revoked through another API process stops working here within `seconds`; this process forgets every
    key as soon as it revokes one or deletes a tenant."""

    def __init__(self, seconds: float = 5.0) -> None:
        self.seconds = seconds
        self._tenants: dict[str, tuple[Tenant, float]] = {}

    def get(self, api_key: str) -> Tenant | None:
        found = self._tenants.get(api_key)
        if found is None or found[1] < time.monotonic():
            return None
        return found[0]

    def put(self, api_key: str, tenant: Tenant) -> None:
        if len(self._tenants) > 10_000:
            self._tenants.clear()
        self._tenants[api_key] = (tenant, time.monotonic() + self.seconds)

    def clear(self) -> None:
        self._tenants.clear()


KEYS = web.AppKey("keys", KeyCache)


async def tenant_of(request: web.Request) -> Tenant:
    """The tenant whose API key authorises this request (401 otherwise; 429 over its request rate)."""
    api_key = bearer(request)
    tenant = request.app[KEYS].get(api_key)
    if tenant is None and api_key.isascii():
        async with request.app[POOL].acquire() as connection:
            tenant = await messages.authenticate(connection, api_key)
        if tenant is not None:
            request.app[KEYS].put(api_key, tenant)
    if tenant is None:
        raise FairlaneError("unauthorized", "the API key is not valid (unknown or revoked)")
    request.app[LIMITER].check(tenant.id)
    return tenant


def tokens_match(given: str, expected: str) -> bool:
    """Constant-time comparison of a presented secret (any bytes a client sent) with the expected one."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode())


def require_admin(request: web.Request) -> None:
    expected = request.app[SETTINGS].admin_token
    token = bearer(request)
    if not expected:
        raise FairlaneError("forbidden", "the admin API is disabled: set FAIRLANE_ADMIN_TOKEN")
    if not tokens_match(token, expected):
        raise FairlaneError("forbidden", "the admin token is not valid")
