"""Who is calling: tenants by API key (with a per-tenant request rate), operators by the admin token.

Refusing a key costs no database round trip per request (docs/decisions/0017): keys are looked up by their
SHA-256 digest; a valid key is trusted for a few seconds, then checked again; an unknown key is remembered as
unknown; concurrent requests with one key share one lookup; and lookups that find no key are limited per
client address and in all, so a client spraying made-up keys is answered 429 from memory. Only lookups that
find nothing count: a valid key's lookup costs its client nothing, and a client that has not failed lately is
never refused, so strangers spraying keys from many addresses cannot lock tenants out."""

import asyncio
import hmac
import ipaddress
import time

from aiohttp import web

from db import messages, receipts
from db.configuration import hash_api_key
from db.errors import FairlaneError
from db.messages import Tenant
from service.api.state import POOL, SETTINGS
from service.model.bounded import BoundedDict


class RateLimiter:
    """A token bucket per key in this process: `rate` per second, `burst` at once (default a second's worth,
    at least one). The `max_keys` used last are kept; a key forgotten starts again with a full bucket."""

    def __init__(self, rate: float, burst: float | None = None, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.capacity = max(rate if burst is None else burst, 1.0)
        self._buckets: BoundedDict[object, tuple[float, float]] = BoundedDict(max_keys)

    def tokens(self, key: object) -> float:
        """The tokens in `key`'s bucket now."""
        now = time.monotonic()
        tokens, at = self._buckets.get(key, (self.capacity, now))
        return min(self.capacity, tokens + (now - at) * self.rate)

    def take(self, key: object) -> bool:
        """Take a token for `key`; False when its bucket is empty."""
        if self.rate <= 0:
            return True
        tokens = self.tokens(key)
        if tokens < 1:
            return False
        self._buckets[key] = (tokens - 1, time.monotonic())
        return True

    def give_back(self, key: object) -> None:
        """Return a token taken for `key` (what it was taken for did not count)."""
        if self.rate > 0:
            self._buckets[key] = (min(self.capacity, self.tokens(key) + 1), time.monotonic())

    def check(self, tenant_id: int) -> None:
        if not self.take(tenant_id):
            raise FairlaneError(
                "rate_limited",
                f"more than {self.rate:g} requests per second; slow down",
                details={"retry_after_seconds": 1},
            )


LIMITER = web.AppKey("limiter", RateLimiter)


def bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise FairlaneError("unauthorized", "an Authorization: Bearer <key> header is required")
    return token.strip()


def client_of(request: web.Request) -> str:
    """Who a per-address limit counts: the client's IPv4 address, or its IPv6 /64 (one host's usual share)."""
    remote = request.remote or ""
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return remote
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return remote


class KeyCache:
    """API keys by digest: valid ones (fresh for `seconds`, then looked up again: a key revoked through another
    API process stops working here within `seconds`; this process forgets a tenant's keys as soon as it revokes
    one of them or deletes the tenant) and unknown ones (for `unknown_seconds`, so a key created meanwhile
    through another process works here after at most that long); the `max_keys` used last of each.

    Lookups that find no key are limited per client address (`per_address` per second, bursts of ten times
    that) and in all (`in_all` per second, bursts of four times that): a lookup takes a token of its client's
    bucket and one of the bucket of all, and gives them back when it finds the key. A client whose bucket is
    empty is refused (429) without a lookup; so is one that has failed lately (its bucket is not full) while the
    bucket of all is empty. A client that has not failed lately is always looked up, and a key that was valid
    here is checked again without any limit."""

    def __init__(
        self,
        seconds: float = 5.0,
        unknown_seconds: float = 10.0,
        per_address: float = 2.0,
        in_all: float = 50.0,
        max_keys: int = 100_000,
    ) -> None:
        self.seconds = seconds
        self.unknown_seconds = unknown_seconds
        self._valid: BoundedDict[str, tuple[Tenant, float]] = BoundedDict(max_keys)
        self._unknown: BoundedDict[str, float] = BoundedDict(max_keys)
        self._lookups: dict[str, asyncio.Future[Tenant | None]] = {}
        self._per_address = RateLimiter(per_address, burst=per_address * 10)
        self._in_all = RateLimiter(in_all, burst=in_all * 4)
        self.queries = 0
        """Lookups that reached the database (a test hook)."""

    def forget_tenant(self, name: str) -> None:
        """Drop the cached keys of tenant `name` (one of them was revoked, or the tenant deleted): they are
        looked up again on their next use."""
        for digest in [digest for digest, (tenant, _) in self._valid.items() if tenant.name == name]:
            del self._valid[digest]

    async def tenant(self, request: web.Request, api_key: str) -> Tenant | None:
        """The tenant holding `api_key`, or None; 429 `rate_limited` when the key is not known here and its
        client's lookups have found nothing too often lately."""
        if not api_key.isascii():
            return None  # keys are ASCII: this one cannot exist
        digest = hash_api_key(api_key)
        now = time.monotonic()
        valid = self._valid.get(digest)
        if valid is not None and valid[1] > now:
            return valid[0]
        unknown_until = self._unknown.get(digest)
        if unknown_until is not None and unknown_until > now:
            return None
        pending = self._lookups.get(digest)
        if pending is not None:  # another request is looking this key up: its answer is ours
            await asyncio.wait([pending])
            if not pending.cancelled():
                return pending.result()
        client = client_of(request)
        taken = self._take(client) if valid is None else None
        future: asyncio.Future[Tenant | None] = asyncio.get_running_loop().create_future()
        self._lookups[digest] = future
        try:
            self.queries += 1
            async with request.app[POOL].acquire() as connection:
                tenant = await messages.authenticate_digest(connection, digest)
            self._remember(digest, tenant)
            if tenant is not None and taken is not None:  # found: the lookup does not count
                self._per_address.give_back(client)
                if taken:
                    self._in_all.give_back(None)
            future.set_result(tenant)
            return tenant
        except asyncio.CancelledError:
            future.cancel()  # whoever waits for it looks the key up itself
            raise
        except Exception as error:
            future.set_exception(error)
            future.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            del self._lookups[digest]

    def _take(self, client: str) -> bool:
        """The tokens of a lookup: 429 when `client` may not look a key up now; whether one of the bucket of all
        was taken."""
        clean = self._per_address.tokens(client) >= self._per_address.capacity  # no failure lately
        if self._per_address.take(client):
            if self._in_all.take(None):
                return True
            if clean:
                return False
            self._per_address.give_back(client)
        raise FairlaneError(
            "rate_limited",
            "too many requests with API keys this server does not know; slow down",
            details={"retry_after_seconds": 1},
        )

    def _remember(self, digest: str, tenant: Tenant | None) -> None:
        now = time.monotonic()
        if tenant is None:
            self._valid.pop(digest, None)
            self._unknown[digest] = now + self.unknown_seconds
        else:
            self._unknown.pop(digest, None)
            self._valid[digest] = (tenant, now + self.seconds)


KEYS = web.AppKey("keys", KeyCache)


class GatewayTokens:
    """Gateways' receipts tokens, read from the database at most every `seconds` per gateway name (unknown names
    too), with lookups of names not cached limited per client address: a receipt is checked against its token
    before its body is read, and made-up gateway names cost no query per request."""

    def __init__(self, seconds: float = 5.0, per_address: float = 2.0, max_names: int = 10_000) -> None:
        self.seconds = seconds
        self._tokens: BoundedDict[str, tuple[str | None, float]] = BoundedDict(max_names)
        self._per_address = RateLimiter(per_address, burst=per_address * 10)

    async def token(self, request: web.Request, gateway: str) -> str | None:
        """The receipts token of `gateway`, None when there is no such gateway."""
        now = time.monotonic()
        cached = self._tokens.get(gateway)
        if cached is not None and cached[1] > now:
            return cached[0]
        if cached is None and not self._per_address.take(client_of(request)):
            raise FairlaneError(
                "rate_limited", "too many receipts for unknown gateways; slow down", details={"retry_after_seconds": 1}
            )
        async with request.app[POOL].acquire() as connection:
            found, token = await receipts.receipts_token(connection, gateway)
        self._tokens[gateway] = (token if found else None, now + self.seconds)
        return token if found else None

    def forget(self, gateway: str) -> None:
        """Drop what is cached of `gateway` (its token changed, or it was deleted)."""
        self._tokens.pop(gateway, None)


GATEWAY_TOKENS = web.AppKey("gateway_tokens", GatewayTokens)


async def tenant_of(request: web.Request) -> Tenant:
    """The tenant whose API key authorises this request (401 otherwise; 429 over its request rate)."""
    tenant = await request.app[KEYS].tenant(request, bearer(request))
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
