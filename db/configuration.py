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
    allocations: tuple[Allocation, ...] = ()


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


# --- parsing -----------------------------------------------------------------------------------------


class _Reader:
    def __init__(self, data: Mapping[str, Any], path: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path} must be a table, got {data!r}")
        self.data = data
        self.path = path
        self.used: set[str] = set()

    def _get(self, key: str, default: Any) -> Any:
        self.used.add(key)
        return self.data.get(key, default)

    def text(self, key: str, default: str | None = None, *, required: bool = False) -> Any:
        value = self._get(key, default)
        if value is None and required:
            raise ConfigError(f"{self.path}.{key} is required")
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"{self.path}.{key} must be a non-empty string, got {value!r}")
        return value

    def choice(self, key: str, choices: Sequence[str]) -> str:
        value = self.text(key, required=True)
        if value not in choices:
            raise ConfigError(f"{self.path}.{key} must be one of {', '.join(choices)}, got {value!r}")
        return str(value)

    def number(self, key: str, default: Decimal | None, *, required: bool = False) -> Any:
        value = self._get(key, None)
        if value is None:
            if required:
                raise ConfigError(f"{self.path}.{key} is required")
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"{self.path}.{key} must be a number above 0, got {value!r}")
        return Decimal(str(value))

    def integer(self, key: str, default: int, *, minimum: int = 1, maximum: int = 2**31 - 1) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            raise ConfigError(f"{self.path}.{key} must be an integer in {minimum}..{maximum}, got {value!r}")
        return value

    def tables(self, key: str) -> list["_Reader"]:
        value = self._get(key, [])
        if not isinstance(value, list):
            raise ConfigError(f"{self.path}.{key} must be an array of tables, got {value!r}")
        return [_Reader(item, f"{self.path}.{key}[{index}]") for index, item in enumerate(value)]

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(f"{self.path} has unknown field {unknown[0]!r}")


def parse(data: Mapping[str, Any]) -> Configuration:
    """Validate a configuration document (as read from TOML); errors name the field path and value."""
    root = _Reader(data, "config")
    tenant_sets = []
    for r in root.tables("tenant_sets"):
        tenant_sets.append(TenantSet(r.text("name", required=True), r.number("weight", Decimal(1))))
        r.done()
    gateways = []
    for r in root.tables("gateways"):
        gateways.append(
            Gateway(
                r.text("name", required=True),
                r.choice("kind", GATEWAY_KINDS),
                r.text("url", required=True),
                r.number("timeout_seconds", Decimal(10)),
                r.integer("max_in_flight", 100),
            )
        )
        r.done()
    destinations = []
    for r in root.tables("destinations"):
        allocations = []
        for a in r.tables("allocations"):
            allocation = Allocation(
                a.text("tenant_set", required=True), a.number("weight", None), a.number("rate", None)
            )
            if (allocation.weight is None) == (allocation.rate is None):
                raise ConfigError(f"{a.path} must have exactly one of weight and rate")
            allocations.append(allocation)
            a.done()
        destinations.append(
            Destination(
                r.text("code", required=True),
                r.text("gateway", required=True),
                rate := r.number("rate", None, required=True),
                # default burst: a fifth of a second at the rate (SPEC's example: 100/s, burst 20)
                r.integer("burst", max(1, math.ceil(rate / 5)), minimum=0),
                r.integer("max_drain_seconds", 14400),
                r.integer("default_validity_seconds", 36000, maximum=36000),
                tuple(allocations),
            )
        )
        r.done()
    tenants = []
    for r in root.tables("tenants"):
        senders = []
        for s in r.tables("senders"):
            senders.append(
                Sender(
                    s.text("address", required=True),
                    s.choice("type", SENDER_TYPES),
                    s.number("rate_cap", None),
                )
            )
            s.done()
        tenants.append(
            Tenant(
                r.text("name", required=True),
                r.text("tenant_set", required=True),
                r.number("weight", Decimal(1)),
                r.text("status_callback"),
                r.text("db_role"),
                tuple(senders),
            )
        )
        r.done()
    routes = None
    if "routes" in data:
        routes = []
        for r in root.tables("routes"):
            routes.append(
                Route(
                    r.text("prefix", required=True),
                    r.choice("sender_type", SENDER_TYPES),
                    r.text("destination", required=True),
                )
            )
            r.done()
    root.done()
    return Configuration(
        tuple(tenant_sets),
        tuple(gateways),
        tuple(destinations),
        tuple(tenants),
        tuple(routes) if routes is not None else None,
    )


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
        result.changes.append(f"created {kind} {label}")
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
                result.changes.append(f"created tenant set {tenant_set.name}")
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
    if cursor.execute(queries.load("configuration")[query], params).fetchone() is None:
        raise ConfigError(what)


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
    current = {row["tenant_set"]: row for row in cursor.execute(q["allocations"], {"code": destination.code})}
    for allocation in destination.allocations:
        _require(
            cursor,
            "tenant_set",
            {"name": allocation.tenant_set},
            f"destination {destination.code}: unknown tenant set {allocation.tenant_set!r}",
        )
        wanted = {"weight": allocation.weight, "rate": allocation.rate}
        params = {"code": destination.code, "tenant_set": allocation.tenant_set, **wanted}
        existing = current.pop(allocation.tenant_set, None)
        if existing is None:
            cursor.execute(q["upsert_allocation"], params)
            result.changes.append(f"created allocation {destination.code}/{allocation.tenant_set}")
        elif _differences(existing, wanted):
            cursor.execute(q["upsert_allocation"], params)
            result.changes.append(
                f"updated allocation {destination.code}/{allocation.tenant_set}: "
                + ", ".join(_differences(existing, wanted))
            )
    for tenant_set in current:
        cursor.execute(q["delete_allocation"], {"code": destination.code, "tenant_set": tenant_set})
        result.changes.append(f"deleted allocation {destination.code}/{tenant_set}")


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
        _upsert(
            cursor,
            result,
            "sender",
            f"{tenant.name}/{sender.address}",
            "sender",
            "upsert_sender",
            {"tenant": tenant.name, "address": sender.address},
            {"type": sender.type, "rate_cap": sender.rate_cap},
        )
    if tenant.db_role is not None:
        changed = cursor.execute(q["grant_tenant_role"], {"tenant": tenant.name, "role": tenant.db_role}).fetchone()
        if changed is not None and changed["changed"]:
            result.changes.append(f"granted database role {tenant.db_role} to tenant {tenant.name}")


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
