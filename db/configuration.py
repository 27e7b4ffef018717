"""Declarative configuration (`fairlane apply CONFIG.toml`): tenant sets, gateways, destinations with
their allocations, tenants with their senders and database roles, and the routing table.

Applying is idempotent: each entity is compared with what the database holds and only differences are
written; the result lists every change. Entities absent from the file are left alone, except routes: the
file's ``routes`` (when present) is the whole routing table.
"""

import hashlib
import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row

from db import queries
from db.errors import translate

SENDER_TYPES = ("long_code", "short_code", "toll_free", "alphanumeric")
GATEWAY_KINDS = ("http", "simulator", "smpp")


class ConfigError(ValueError):
    """The configuration has a bad value; the message names the field path and the value."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class TenantSet:
    name: str
    weight: Decimal = Decimal(1)


@dataclass(frozen=True)
class Gateway:
    name: str
    kind: str
    url: str
    timeout_seconds: Decimal = Decimal(10)
    max_in_flight: int = 100
    receipts_token: str | None = None
    """When set, delivery receipts must carry `Authorization: Bearer <receipts_token>`."""


@dataclass(frozen=True)
class Allocation:
    tenant_set: str
    weight: Decimal | None = None
    rate: Decimal | None = None


@dataclass(frozen=True)
class Destination:
    code: str
    gateway: str
    rate: Decimal
    burst: int = 1
    max_drain_seconds: int = 14400
    default_validity_seconds: int = 36000
    allocations: tuple[Allocation, ...] | None = ()
    """The destination's whole allocation table; None leaves the stored allocations alone."""


@dataclass(frozen=True)
class Sender:
    address: str
    type: str
    rate_cap: Decimal | None = None


@dataclass(frozen=True)
class Tenant:
    name: str
    tenant_set: str
    weight: Decimal = Decimal(1)
    status_callback: str | None = None
    db_role: str | None = None
    senders: tuple[Sender, ...] = ()


@dataclass(frozen=True)
class Route:
    prefix: str
    sender_type: str
    destination: str


@dataclass(frozen=True)
class Configuration:
    tenant_sets: tuple[TenantSet, ...] = ()
    gateways: tuple[Gateway, ...] = ()
    destinations: tuple[Destination, ...] = ()
    tenants: tuple[Tenant, ...] = ()
    routes: tuple[Route, ...] | None = None


@dataclass
class Result:
    changes: list[str] = field(default_factory=list)
    api_keys: dict[str, str] = field(default_factory=dict)
    """API keys of tenants created by this run, by tenant name (shown once, stored only as digests)."""
    created: set[str] = field(default_factory=set)
    """What this run created, as "<kind> <label>" (e.g. "tenant acme", "allocation US/enterprise")."""

    def record_created(self, kind: str, label: str) -> None:
        self.changes.append(f"created {kind} {label}")
        self.created.add(f"{kind} {label}")


# --- parsing -----------------------------------------------------------------------------------------


def is_plain_text(value: str) -> bool:
    """Text PostgreSQL can store: no NUL character, no lone surrogate."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Reader:
    def __init__(self, data: Mapping[str, Any], path: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path or 'the body'} must be a table (a JSON object), got {data!r}", path or None)
        self.data = data
        self.path = path
        self.used: set[str] = set()

    def _name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def _get(self, key: str, default: Any) -> Any:
        self.used.add(key)
        return self.data.get(key, default)

    def text(self, key: str, default: str | None = None, *, required: bool = False) -> Any:
        value = self._get(key, default)
        if value is None and required:
            raise ConfigError(f"{self._name(key)} is required", self._name(key))
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"{self._name(key)} must be a non-empty string, got {value!r}", self._name(key))
        if value is not None and not is_plain_text(value):
            raise ConfigError(f"{self._name(key)} must not contain NUL or lone surrogates", self._name(key))
        return value

    def choice(self, key: str, choices: Sequence[str]) -> str:
        value = self.text(key, required=True)
        if value not in choices:
            raise ConfigError(f"{self._name(key)} must be one of {', '.join(choices)}, got {value!r}", self._name(key))
        return str(value)

    def number(self, key: str, default: Decimal | None, *, required: bool = False) -> Any:
        value = self._get(key, None)
        if value is None:
            if required:
                raise ConfigError(f"{self._name(key)} is required", self._name(key))
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e15:
            raise ConfigError(f"{self._name(key)} must be a number above 0, got {value!r}", self._name(key))
        return Decimal(str(value))

    def integer(self, key: str, default: int, *, minimum: int = 1, maximum: int = 2**31 - 1) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            raise ConfigError(
                f"{self._name(key)} must be an integer in {minimum}..{maximum}, got {value!r}", self._name(key)
            )
        return value

    def tables(self, key: str) -> list["Reader"]:
        value = self._get(key, [])
        if not isinstance(value, list):
            raise ConfigError(f"{self._name(key)} must be an array of tables, got {value!r}", self._name(key))
        return [Reader(item, f"{self._name(key)}[{index}]") for index, item in enumerate(value)]

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(f"{self.path or 'the body'} has unknown field {unknown[0]!r}", self._name(unknown[0]))


def read(data: Any, path: str = "") -> Reader:
    """A reader over one table (a JSON object) whose errors name fields under `path`."""
    return Reader(data, path)


def tenant_set_from(r: Reader) -> TenantSet:
    result = TenantSet(r.text("name", required=True), r.number("weight", Decimal(1)))
    r.done()
    return result


def gateway_from(r: Reader) -> Gateway:
    result = Gateway(
        r.text("name", required=True),
        r.choice("kind", GATEWAY_KINDS),
        r.text("url", required=True),
        r.number("timeout_seconds", Decimal(10)),
        r.integer("max_in_flight", 100),
        r.text("receipts_token"),
    )
    r.done()
    return result


def allocation_from(r: Reader) -> Allocation:
    result = Allocation(r.text("tenant_set", required=True), r.number("weight", None), r.number("rate", None))
    if (result.weight is None) == (result.rate is None):
        raise ConfigError(f"{r.path or 'the body'} must have exactly one of weight and rate", r._name("weight"))
    r.done()
    return result


def destination_from(r: Reader, *, with_allocations: bool = True) -> Destination:
    allocations = tuple(allocation_from(a) for a in r.tables("allocations")) if with_allocations else None
    result = Destination(
        r.text("code", required=True),
        r.text("gateway", required=True),
        rate := r.number("rate", None, required=True),
        # default burst: a fifth of a second at the rate (SPEC's example: 100/s, burst 20)
        r.integer("burst", max(1, math.ceil(rate / 5)), minimum=0),
        r.integer("max_drain_seconds", 14400),
        r.integer("default_validity_seconds", 36000, maximum=36000),
        allocations,
    )
    r.done()
    return result


def sender_from(r: Reader) -> Sender:
    result = Sender(r.text("address", required=True), r.choice("type", SENDER_TYPES), r.number("rate_cap", None))
    r.done()
    return result


def tenant_from(r: Reader) -> Tenant:
    result = Tenant(
        r.text("name", required=True),
        r.text("tenant_set", required=True),
        r.number("weight", Decimal(1)),
        r.text("status_callback"),
        r.text("db_role"),
        tuple(sender_from(s) for s in r.tables("senders")),
    )
    r.done()
    return result


def route_from(r: Reader) -> Route:
    result = Route(
        r.text("prefix", required=True), r.choice("sender_type", SENDER_TYPES), r.text("destination", required=True)
    )
    r.done()
    return result


def parse(data: Mapping[str, Any]) -> Configuration:
    """Validate a configuration document (as read from TOML); errors name the field path and value."""
    root = Reader(data, "config")
    result = Configuration(
        tuple(tenant_set_from(r) for r in root.tables("tenant_sets")),
        tuple(gateway_from(r) for r in root.tables("gateways")),
        tuple(destination_from(r) for r in root.tables("destinations")),
        tuple(tenant_from(r) for r in root.tables("tenants")),
        tuple(route_from(r) for r in root.tables("routes")) if "routes" in data else None,
    )
    root.done()
    return result


# --- applying ----------------------------------------------------------------------------------------


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_api_key() -> str:
    return "fl_" + secrets.token_urlsafe(24)


def _differences(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    return [f"{key} {current[key]} -> {value}" for key, value in wanted.items() if current[key] != value]


def _upsert(
    cursor: psycopg.Cursor[Any],
    result: Result,
    kind: str,
    label: str,
    select: str,
    upsert: str,
    key: Mapping[str, Any],
    wanted: Mapping[str, Any],
) -> bool:
    """Create or update one entity; record the change; return True when it was created."""
    q = queries.load("configuration")
    current = cursor.execute(q[select], key).fetchone()
    if current is None:
        cursor.execute(q[upsert], {**key, **wanted})
        result.record_created(kind, label)
        return True
    differences = _differences(current, wanted)
    if differences:
        cursor.execute(q[upsert], {**key, **wanted})
        result.changes.append(f"updated {kind} {label}: {', '.join(differences)}")
    return False


def apply(connection: psycopg.Connection[Any], configuration: Configuration) -> Result:
    """Apply a configuration in one transaction; return what changed."""
    result = Result()
    q = queries.load("configuration")
    with translate(), connection.transaction(), connection.cursor(row_factory=dict_row) as cursor:
        for tenant_set in configuration.tenant_sets:
            current = cursor.execute(q["tenant_set"], {"name": tenant_set.name}).fetchone()
            if current is None:
                cursor.execute(q["insert_tenant_set"], {"name": tenant_set.name, "weight": tenant_set.weight})
                result.record_created("tenant set", tenant_set.name)
            elif current["weight"] != tenant_set.weight:
                cursor.execute(q["update_tenant_set"], {"name": tenant_set.name, "weight": tenant_set.weight})
                result.changes.append(
                    f"updated tenant set {tenant_set.name}: weight {current['weight']} -> {tenant_set.weight}"
                )
        for gateway in configuration.gateways:
            _upsert(
                cursor,
                result,
                "gateway",
                gateway.name,
                "gateway",
                "upsert_gateway",
                {"name": gateway.name},
                {
                    "kind": gateway.kind,
                    "url": gateway.url,
                    "timeout_seconds": gateway.timeout_seconds,
                    "max_in_flight": gateway.max_in_flight,
                    "receipts_token": gateway.receipts_token,
                },
            )
        for destination in configuration.destinations:
            _apply_destination(cursor, result, destination)
        for tenant in configuration.tenants:
            _apply_tenant(cursor, result, tenant)
        if configuration.routes is not None:
            _apply_routes(cursor, result, configuration.routes)
    return result


def _require(cursor: psycopg.Cursor[Any], query: str, params: Mapping[str, Any], what: str) -> None:
    """Fail unless the entity named by `params` exists; `query` is also the field that names it."""
    if cursor.execute(queries.load("configuration")[query], params).fetchone() is None:
        raise ConfigError(what, query)


def _apply_destination(cursor: psycopg.Cursor[Any], result: Result, destination: Destination) -> None:
    q = queries.load("configuration")
    _require(
        cursor,
        "gateway",
        {"name": destination.gateway},
        f"destination {destination.code}: unknown gateway {destination.gateway!r}",
    )
    _upsert(
        cursor,
        result,
        "destination",
        destination.code,
        "destination",
        "upsert_destination",
        {"code": destination.code},
        {
            "gateway": destination.gateway,
            "rate": destination.rate,
            "burst": destination.burst,
            "max_drain_seconds": destination.max_drain_seconds,
            "default_validity_seconds": destination.default_validity_seconds,
        },
    )
    if destination.allocations is None:
        return
    current = {row["tenant_set"]: row for row in cursor.execute(q["allocations"], {"code": destination.code})}
    for allocation in destination.allocations:
        _require(
            cursor,
            "tenant_set",
            {"name": allocation.tenant_set},
            f"destination {destination.code}: unknown tenant set {allocation.tenant_set!r}",
        )
        _apply_allocation(cursor, result, destination.code, allocation, current.pop(allocation.tenant_set, None))
    for tenant_set in current:
        cursor.execute(q["delete_allocation"], {"code": destination.code, "tenant_set": tenant_set})
        result.changes.append(f"deleted allocation {destination.code}/{tenant_set}")


def _apply_allocation(
    cursor: psycopg.Cursor[Any],
    result: Result,
    destination: str,
    allocation: Allocation,
    existing: Mapping[str, Any] | None,
) -> None:
    q = queries.load("configuration")
    wanted = {"weight": allocation.weight, "rate": allocation.rate}
    params = {"code": destination, "tenant_set": allocation.tenant_set, **wanted}
    if existing is None:
        cursor.execute(q["upsert_allocation"], params)
        result.record_created("allocation", f"{destination}/{allocation.tenant_set}")
    elif _differences(existing, wanted):
        cursor.execute(q["upsert_allocation"], params)
        result.changes.append(
            f"updated allocation {destination}/{allocation.tenant_set}: " + ", ".join(_differences(existing, wanted))
        )


def _apply_tenant(cursor: psycopg.Cursor[Any], result: Result, tenant: Tenant) -> None:
    q = queries.load("configuration")
    _require(
        cursor,
        "tenant_set",
        {"name": tenant.tenant_set},
        f"tenant {tenant.name}: unknown tenant set {tenant.tenant_set!r}",
    )
    created = _upsert(
        cursor,
        result,
        "tenant",
        tenant.name,
        "tenant",
        "upsert_tenant",
        {"name": tenant.name},
        {"tenant_set": tenant.tenant_set, "weight": tenant.weight, "status_callback": tenant.status_callback},
    )
    if created:
        api_key = new_api_key()
        cursor.execute(q["insert_api_key"], {"tenant": tenant.name, "key_hash": hash_api_key(api_key)})
        result.api_keys[tenant.name] = api_key
    for sender in tenant.senders:
        _apply_sender(cursor, result, tenant.name, sender)
    if tenant.db_role is not None:
        changed = cursor.execute(q["grant_tenant_role"], {"tenant": tenant.name, "role": tenant.db_role}).fetchone()
        if changed is not None and changed["changed"]:
            result.changes.append(f"granted database role {tenant.db_role} to tenant {tenant.name}")


def _apply_sender(cursor: psycopg.Cursor[Any], result: Result, tenant: str, sender: Sender) -> None:
    _upsert(
        cursor,
        result,
        "sender",
        f"{tenant}/{sender.address}",
        "sender",
        "upsert_sender",
        {"tenant": tenant, "address": sender.address},
        {"type": sender.type, "rate_cap": sender.rate_cap},
    )


def apply_sender(connection: psycopg.Connection[Any], tenant: str, sender: Sender) -> Result:
    """Create or change one sender of an existing tenant."""
    result = Result()
    with translate(), connection.transaction(), connection.cursor(row_factory=dict_row) as cursor:
        _require(cursor, "tenant", {"name": tenant}, f"unknown tenant {tenant!r}")
        _apply_sender(cursor, result, tenant, sender)
    return result


def apply_allocation(connection: psycopg.Connection[Any], destination: str, allocation: Allocation) -> Result:
    """Create or change one allocation of an existing destination, leaving its others alone."""
    result = Result()
    q = queries.load("configuration")
    with translate(), connection.transaction(), connection.cursor(row_factory=dict_row) as cursor:
        _require(cursor, "destination", {"code": destination}, f"unknown destination {destination!r}")
        _require(cursor, "tenant_set", {"name": allocation.tenant_set}, f"unknown tenant set {allocation.tenant_set!r}")
        current = {row["tenant_set"]: row for row in cursor.execute(q["allocations"], {"code": destination})}
        _apply_allocation(cursor, result, destination, allocation, current.get(allocation.tenant_set))
    return result


def _apply_routes(cursor: psycopg.Cursor[Any], result: Result, routes: Sequence[Route]) -> None:
    q = queries.load("configuration")
    current = {(r["prefix"], r["sender_type"]): r["destination"] for r in cursor.execute(q["routes"])}
    wanted = {(r.prefix, r.sender_type): r.destination for r in routes}
    for (prefix, sender_type), destination in current.items():
        if (prefix, sender_type) not in wanted:
            cursor.execute(q["delete_route"], {"prefix": prefix, "sender_type": sender_type})
            result.changes.append(f"deleted route {prefix} {sender_type} -> {destination}")
    for (prefix, sender_type), destination in wanted.items():
        if current.get((prefix, sender_type)) == destination:
            continue
        _require(
            cursor,
            "destination",
            {"code": destination},
            f"route {prefix} {sender_type}: unknown destination {destination!r}",
        )
        cursor.execute(q["upsert_route"], {"prefix": prefix, "sender_type": sender_type, "destination": destination})
        verb = "created" if (prefix, sender_type) not in current else "updated"
        result.changes.append(f"{verb} route {prefix} {sender_type} -> {destination}")


def is_configured(connection: psycopg.Connection[Any]) -> bool:
    row = connection.execute(queries.load("configuration")["is_configured"]).fetchone()
    return bool(row and row[0])
