"""Applying declarative configuration (`fairlane apply CONFIG.toml`, the admin API's PUTs): tenant sets,
gateways, destinations with their allocations, tenants with their senders and database roles, and the
routing table, each given as a plain mapping (the shapes of service/model/configuration.py, as their
`model_dump()` gives them).

Applying is idempotent: each entity is compared with what the database holds and only differences are
written; the result lists every change (`retention` is in seconds). Entities absent from the document are
left alone, except routes: the document's ``routes`` (when not None) is the whole routing table.
"""

import hashlib
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import JsonbDumper

from db import queries
from db.errors import FairlaneError, translate

Entity = Mapping[str, Any]


@dataclass
class Result:
    changes: list[str] = field(default_factory=list)
    api_keys: dict[str, str] = field(default_factory=dict)
    """API keys of tenants created by this run, by tenant name (shown once, stored only as digests)."""
    receipts_tokens: dict[str, str] = field(default_factory=dict)
    """Receipts tokens this run made up (for gateways it created without one), by gateway name: shown once (the
    admin API's GETs never show them); a token the document gives is the operator's already and never shown."""
    created: set[str] = field(default_factory=set)
    """What this run created, as "<kind> <label>" (e.g. "tenant acme", "allocation US/enterprise")."""

    def record_created(self, kind: str, label: str) -> None:
        self.changes.append(f"created {kind} {label}")
        self.created.add(f"{kind} {label}")


# --- applying ----------------------------------------------------------------------------------------


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_api_key() -> str:
    return "fl_" + secrets.token_urlsafe(24)


def _differences(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    differences = []
    for key, value in wanted.items():
        if isinstance(value, dict) and isinstance(current[key], dict):  # settings: the keys that changed
            keys = sorted(current[key].keys() | value.keys())
            differences += _differences(
                {f"{key}.{k}": current[key].get(k) for k in keys}, {f"{key}.{k}": value.get(k) for k in keys}
            )
        elif current[key] != value:
            secret = key.endswith(("password", "token"))  # a secret's change is said, never shown
            differences.append(f"{key} changed" if secret else f"{key} {current[key]} -> {value}")
    return differences


GATEWAY_COLUMNS = ("kind", "url", "timeout_seconds", "max_in_flight", "receipts_token")


def smpp_settings(gateway: Entity) -> dict[str, Any] | None:
    """An smpp gateway's session settings (`gateways.smpp`): the document's fields other than its name and
    the gateway's columns, as JSON values; None for other kinds."""
    if gateway["kind"] != "smpp":
        return None
    return {
        key: float(value) if isinstance(value, Decimal) else value
        for key, value in gateway.items()
        if key not in ("name", *GATEWAY_COLUMNS) and value is not None
    }


def smpp_gateway(connection: psycopg.Connection[Any], name: str) -> dict[str, Any] | None:
    """An smpp gateway's session settings, password included (`fairlane run`'s simulator); None for others."""
    row = connection.execute(queries.load("configuration")["smpp_gateway"], {"name": name}).fetchone()
    return dict(row[0]) if row is not None and row[0] is not None else None


def new_receipts_token() -> str:
    return "rt_" + secrets.token_urlsafe(32)


def _with_receipts_token(
    cursor: psycopg.Cursor[Any], result: Result, name: str, wanted: dict[str, Any]
) -> dict[str, Any]:
    """A gateway's wanted columns with its receipts token settled (docs/decisions/0017): the one given (setting or
    rotating it), else the current one, else for a new gateway one made up and noted in `result.receipts_tokens`
    to be shown once."""
    current = cursor.execute(queries.load("configuration")["gateway"], {"name": name}).fetchone()
    token = wanted["receipts_token"]
    if token is None and current is not None:
        token = current["receipts_token"]
    elif token is None:
        token = result.receipts_tokens[name] = new_receipts_token()
    return {**wanted, "receipts_token": token}


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


def apply(connection: psycopg.Connection[Any], configuration: Entity) -> Result:
    """Apply a configuration document (callbacks, limits, levels, retention, tenant_sets, gateways, destinations,
    tenants, routes; each key optional) in one transaction; return what changed."""
    result = Result()
    with translate(), connection.transaction(), connection.cursor(row_factory=dict_row) as cursor:
        cursor.adapters.register_dumper(dict, JsonbDumper)  # settings documents (gateways.smpp)
        if configuration.get("callbacks") is not None:
            callbacks = configuration["callbacks"]
            _upsert(
                cursor,
                result,
                "callbacks",
                "settings",
                "callbacks",
                "update_callbacks",
                {},
                {"allow_networks": list(callbacks["allow_networks"]), "allow_http": callbacks["allow_http"]},
            )
        if configuration.get("limits") is not None:
            _upsert(
                cursor,
                result,
                "limits",
                "settings",
                "limits",
                "update_limits",
                {},
                {"scheduled_per_tenant": configuration["limits"]["scheduled_per_tenant"]},
            )
        if configuration.get("levels") is not None:
            _upsert(
                cursor,
                result,
                "levels",
                "of service",
                "levels",
                "update_levels",
                {},
                {"minimum_share": configuration["levels"]["minimum_share"]},
            )
        if configuration.get("retention") is not None:
            _upsert(
                cursor,
                result,
                "retention",
                "of finished messages",
                "retention",
                "update_retention",
                {},
                {"retention_seconds": configuration["retention"]["finished_messages"]},
            )
        for tenant_set in configuration.get("tenant_sets", ()):
            _upsert(
                cursor,
                result,
                "tenant set",
                tenant_set["name"],
                "tenant_set",
                "upsert_tenant_set",
                {"name": tenant_set["name"]},
                {"weight": tenant_set["weight"]},
            )
        for gateway in configuration.get("gateways", ()):
            _upsert(
                cursor,
                result,
                "gateway",
                gateway["name"],
                "gateway",
                "upsert_gateway",
                {"name": gateway["name"]},
                _with_receipts_token(
                    cursor, result, gateway["name"],
                    {**{key: gateway[key] for key in GATEWAY_COLUMNS}, "smpp": smpp_settings(gateway)},
                ),
            )  # fmt: skip
        for destination in configuration.get("destinations", ()):
            _apply_destination(cursor, result, destination)
        for tenant in configuration.get("tenants", ()):
            _apply_tenant(cursor, result, tenant)
        if configuration.get("routes") is not None:
            _apply_routes(cursor, result, configuration["routes"])
    return result


def _require(cursor: psycopg.Cursor[Any], query: str, params: Mapping[str, Any], what: str) -> None:
    """Fail unless the entity named by `params` exists; `query` is also the field that names it."""
    if cursor.execute(queries.load("configuration")[query], params).fetchone() is None:
        raise FairlaneError("invalid_request", what, field=query)


WINDOW_FIELDS = ("per_minute", "per_hour", "per_day", "reset_timezone", "window")
"""A destination's and a sender's quota windows (docs/decisions/0020); `window` is the column window_kind."""
DESTINATION_FIELDS = ("gateway", "rate", "burst", "max_drain_seconds", "default_validity_seconds", *WINDOW_FIELDS)


def _apply_destination(cursor: psycopg.Cursor[Any], result: Result, destination: Entity) -> None:
    """A destination and, when the document has them, its whole allocation table."""
    q = queries.load("configuration")
    code = destination["code"]
    _require(
        cursor,
        "gateway",
        {"name": destination["gateway"]},
        f"destination {code}: unknown gateway {destination['gateway']!r}",
    )
    _upsert(
        cursor,
        result,
        "destination",
        code,
        "destination",
        "upsert_destination",
        {"code": code},
        {key: destination[key] for key in DESTINATION_FIELDS},
    )
    if "allocations" not in destination:
        return
    current = {row["tenant_set"]: row for row in cursor.execute(q["allocations"], {"code": code})}
    for allocation in destination["allocations"]:
        _require(
            cursor,
            "tenant_set",
            {"name": allocation["tenant_set"]},
            f"destination {code}: unknown tenant set {allocation['tenant_set']!r}",
        )
        _apply_allocation(cursor, result, code, allocation, current.pop(allocation["tenant_set"], None))
    for tenant_set in current:
        cursor.execute(q["delete_allocation"], {"code": code, "tenant_set": tenant_set})
        result.changes.append(f"deleted allocation {code}/{tenant_set}")


def _apply_allocation(
    cursor: psycopg.Cursor[Any], result: Result, destination: str, allocation: Entity, existing: Entity | None
) -> None:
    q = queries.load("configuration")
    wanted = {"weight": allocation["weight"], "rate": allocation["rate"]}
    label = f"{destination}/{allocation['tenant_set']}"
    params = {"code": destination, "tenant_set": allocation["tenant_set"], **wanted}
    if existing is None:
        cursor.execute(q["upsert_allocation"], params)
        result.record_created("allocation", label)
    elif _differences(existing, wanted):
        cursor.execute(q["upsert_allocation"], params)
        result.changes.append(f"updated allocation {label}: " + ", ".join(_differences(existing, wanted)))


def _apply_tenant(cursor: psycopg.Cursor[Any], result: Result, tenant: Entity) -> None:
    """A tenant (a new one gets an API key), its senders and its database role, when given."""
    q = queries.load("configuration")
    name = tenant["name"]
    _require(
        cursor,
        "tenant_set",
        {"name": tenant["tenant_set"]},
        f"tenant {name}: unknown tenant set {tenant['tenant_set']!r}",
    )
    created = _upsert(
        cursor,
        result,
        "tenant",
        name,
        "tenant",
        "upsert_tenant",
        {"name": name},
        {key: tenant[key] for key in ("tenant_set", "weight", "status_callback")},
    )
    if created:
        api_key = new_api_key()
        cursor.execute(q["insert_api_key"], {"tenant": name, "key_hash": hash_api_key(api_key)})
        result.api_keys[name] = api_key
    for sender in tenant.get("senders", ()):
        _apply_sender(cursor, result, name, sender)
    if tenant.get("db_role") is not None:
        changed = cursor.execute(q["grant_tenant_role"], {"tenant": name, "role": tenant["db_role"]}).fetchone()
        if changed is not None and changed["changed"]:
            result.changes.append(f"granted database role {tenant['db_role']} to tenant {name}")


def _apply_sender(cursor: psycopg.Cursor[Any], result: Result, tenant: str, sender: Entity) -> None:
    _upsert(
        cursor,
        result,
        "sender",
        f"{tenant}/{sender['address']}",
        "sender",
        "upsert_sender",
        {"tenant": tenant, "address": sender["address"]},
        {"type": sender["type"], "rate_cap": sender["rate_cap"], **{key: sender[key] for key in WINDOW_FIELDS}},
    )


def apply_sender(connection: psycopg.Connection[Any], tenant: str, sender: Entity) -> Result:
    """Create or change one sender of an existing tenant."""
    result = Result()
    with translate(), connection.transaction(), connection.cursor(row_factory=dict_row) as cursor:
        _require(cursor, "tenant", {"name": tenant}, f"unknown tenant {tenant!r}")
        _apply_sender(cursor, result, tenant, sender)
    return result


def apply_allocation(connection: psycopg.Connection[Any], destination: str, allocation: Entity) -> Result:
    """Create or change one allocation of an existing destination, leaving its others alone."""
    result = Result()
    q = queries.load("configuration")
    with translate(), connection.transaction(), connection.cursor(row_factory=dict_row) as cursor:
        _require(cursor, "destination", {"code": destination}, f"unknown destination {destination!r}")
        _require(
            cursor, "tenant_set", {"name": allocation["tenant_set"]}, f"unknown tenant set {allocation['tenant_set']!r}"
        )
        current = {row["tenant_set"]: row for row in cursor.execute(q["allocations"], {"code": destination})}
        _apply_allocation(cursor, result, destination, allocation, current.get(allocation["tenant_set"]))
    return result


def _apply_routes(cursor: psycopg.Cursor[Any], result: Result, routes: Sequence[Entity]) -> None:
    q = queries.load("configuration")
    current = {(r["prefix"], r["sender_type"]): r["destination"] for r in cursor.execute(q["routes"])}
    wanted = {(r["prefix"], r["sender_type"]): r["destination"] for r in routes}
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


@dataclass(frozen=True)
class GatewaySummary:
    name: str
    kind: str
    url: str
    receipts_token: str | None


def gateways(connection: psycopg.Connection[Any]) -> list[GatewaySummary]:
    """Every gateway (what `fairlane run` needs to start simulators)."""
    return [GatewaySummary(*row) for row in connection.execute(queries.load("configuration")["gateways"])]


def api_key_works(connection: psycopg.Connection[Any], tenant: str, api_key: str) -> bool:
    """Whether `api_key` is a key of `tenant` that has not been revoked."""
    row = connection.execute(
        queries.load("configuration")["api_key_works"], {"tenant": tenant, "key_hash": hash_api_key(api_key)}
    ).fetchone()
    return bool(row and row[0])


def tenants(connection: psycopg.Connection[Any]) -> list[str]:
    """Tenant names, `demo` first when it exists."""
    return [row[0] for row in connection.execute(queries.load("configuration")["tenants"])]
