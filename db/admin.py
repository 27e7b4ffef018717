"""The HTTP API's admin side (psycopg): configuration entities one at a time, API keys, queue scores, the dashboard.

Creating and changing entities goes through db/configuration.py, the same code as `fairlane apply`, so the
file and the API cannot disagree; each function runs in its own transaction and returns the entity as
stored (plain dicts, ready for JSON) and whether it was created."""

import base64
import secrets
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from db import configuration, queries
from db.configuration import Entity as Document
from db.errors import FairlaneError, translate

Connection = psycopg.Connection[Any]
Entity = dict[str, Any]


def _one(connection: Connection, query: str, **params: Any) -> Entity | None:
    with connection.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(queries.load("admin")[query], params).fetchone()


def _all(connection: Connection, query: str, **params: Any) -> list[Entity]:
    with connection.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(queries.load("admin")[query], params).fetchall()


def _found(entity: Entity | None, what: str) -> Entity:
    if entity is None:
        raise FairlaneError("not_found", f"{what} not found")
    return entity


def _delete(connection: Connection, query: str, what: str, **params: Any) -> None:
    """Delete one entity; 404 when missing, 409 while other entities still refer to it."""
    try:
        with connection.transaction():
            deleted = _one(connection, query, **params)
    except psycopg.errors.ForeignKeyViolation:
        raise FairlaneError("conflict", f"{what} is still in use; remove what refers to it first") from None
    _found(deleted, what)


def _apply(connection: Connection, wanted: Document, created: str) -> bool:
    return created in configuration.apply(connection, wanted).created


# --- tenant sets -------------------------------------------------------------------------------------


def tenant_set(connection: Connection, name: str) -> Entity:
    return _found(_one(connection, "tenant_set", name=name), f"tenant set {name!r}")


def put_tenant_set(connection: Connection, value: Document) -> tuple[Entity, bool]:
    created = _apply(connection, {"tenant_sets": [value]}, f"tenant set {value['name']}")
    return tenant_set(connection, value["name"]), created


def delete_tenant_set(connection: Connection, name: str) -> None:
    _delete(connection, "delete_tenant_set", f"tenant set {name!r}", name=name)


# --- tenants and their keys and senders --------------------------------------------------------------


def tenant(connection: Connection, name: str) -> Entity:
    entity = _found(_one(connection, "tenant", name=name), f"tenant {name!r}")
    return {**entity, "api_keys": _all(connection, "api_keys", tenant=name)}


def put_tenant(connection: Connection, value: Document) -> tuple[Entity, bool]:
    result = configuration.apply(connection, {"tenants": [value]})
    entity = tenant(connection, value["name"])
    if value["name"] in result.api_keys:  # created: its key and signing secret are shown once
        entity["api_key"] = result.api_keys[value["name"]]
        entity["signing_secret"] = _found(_one(connection, "signing_secret", name=value["name"]), "tenant")[
            "signing_secret"
        ]
    return entity, f"tenant {value['name']}" in result.created


def new_signing_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and the base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def rotate_signing_secret(connection: Connection, tenant_name: str, grace_seconds: int) -> Entity:
    """A new signing secret for a tenant, shown once; callbacks are signed with the previous one too for
    `grace_seconds` (Standard Webhooks receivers accept any of several signatures)."""
    secret = new_signing_secret()
    with connection.transaction():
        _found(
            _one(connection, "rotate_signing_secret", name=tenant_name, secret=secret, grace_seconds=grace_seconds),
            f"tenant {tenant_name!r}",
        )
    return {**tenant(connection, tenant_name), "signing_secret": secret}


def delete_tenant(connection: Connection, name: str) -> None:
    _delete(connection, "delete_tenant", f"tenant {name!r}", name=name)


def new_api_key(connection: Connection, tenant_name: str) -> Entity:
    """A further API key for a tenant; earlier keys keep working until revoked."""
    tenant(connection, tenant_name)
    api_key = configuration.new_api_key()
    with connection.transaction():
        entity = _one(connection, "insert_api_key", tenant=tenant_name, key_hash=configuration.hash_api_key(api_key))
    return {**_found(entity, f"tenant {tenant_name!r}"), "api_key": api_key}


def revoke_api_key(connection: Connection, tenant_name: str, key_id: int) -> Entity:
    with connection.transaction():
        return _found(_one(connection, "revoke_api_key", tenant=tenant_name, id=key_id), f"API key {key_id}")


def sender(connection: Connection, tenant_name: str, address: str) -> Entity:
    return _found(_one(connection, "sender", tenant=tenant_name, address=address), f"sender {address!r}")


def put_sender(connection: Connection, tenant_name: str, value: Document) -> tuple[Entity, bool]:
    tenant(connection, tenant_name)
    result = configuration.apply_sender(connection, tenant_name, value)
    address = value["address"]
    return sender(connection, tenant_name, address), f"sender {tenant_name}/{address}" in result.created


def delete_sender(connection: Connection, tenant_name: str, address: str) -> None:
    _delete(connection, "delete_sender", f"sender {address!r}", tenant=tenant_name, address=address)


# --- gateways, destinations, allocations, routes -----------------------------------------------------


def gateway(connection: Connection, name: str) -> Entity:
    return _found(_one(connection, "gateway", name=name), f"gateway {name!r}")


def put_gateway(connection: Connection, value: Document) -> tuple[Entity, bool]:
    """The receipts token is in the answer only when it was made up (a gateway created without one)."""
    result = configuration.apply(connection, {"gateways": [value]})
    entity = gateway(connection, value["name"])
    if value["name"] in result.receipts_tokens:
        entity["receipts_token"] = result.receipts_tokens[value["name"]]
    return entity, f"gateway {value['name']}" in result.created


def rotate_receipts_token(connection: Connection, name: str) -> Entity:
    """A new receipts token for a gateway, made up and shown once; the old one stops working at once."""
    token = configuration.new_receipts_token()
    with connection.transaction():
        _found(_one(connection, "rotate_receipts_token", name=name, token=token), f"gateway {name!r}")
    return {**gateway(connection, name), "receipts_token": token}


def delete_gateway(connection: Connection, name: str) -> None:
    _delete(connection, "delete_gateway", f"gateway {name!r}", name=name)


def destination(connection: Connection, code: str) -> Entity:
    entity = _found(_one(connection, "destination", code=code), f"destination {code!r}")
    return {**entity, "allocations": _all(connection, "allocations", code=code)}


def put_destination(connection: Connection, value: Document) -> tuple[Entity, bool]:
    """A destination without an `allocations` key keeps its allocations."""
    created = _apply(connection, {"destinations": [value]}, f"destination {value['code']}")
    return destination(connection, value["code"]), created


def delete_destination(connection: Connection, code: str) -> None:
    _delete(connection, "delete_destination", f"destination {code!r}", code=code)


def allocation(connection: Connection, code: str, tenant_set_name: str) -> Entity:
    for entity in destination(connection, code)["allocations"]:
        if entity["tenant_set"] == tenant_set_name:
            return dict(entity)
    raise FairlaneError("not_found", f"allocation of destination {code!r} to tenant set {tenant_set_name!r} not found")


def put_allocation(connection: Connection, code: str, value: Document) -> tuple[Entity, bool]:
    destination(connection, code)
    result = configuration.apply_allocation(connection, code, value)
    tenant_set_name = value["tenant_set"]
    return allocation(connection, code, tenant_set_name), f"allocation {code}/{tenant_set_name}" in result.created


def delete_allocation(connection: Connection, code: str, tenant_set_name: str) -> None:
    _delete(
        connection,
        "delete_allocation",
        f"allocation of destination {code!r} to tenant set {tenant_set_name!r}",
        code=code,
        tenant_set=tenant_set_name,
    )


def routes(connection: Connection) -> list[Entity]:
    return _all(connection, "routes")


def put_routes(connection: Connection, values: list[Document]) -> list[Entity]:
    configuration.apply(connection, {"routes": values})
    return routes(connection)


def _settings(connection: Connection, query: str) -> Entity:
    """One part of the settings, read as `fairlane apply` reads it (sql/queries/configuration.sql)."""
    with connection.cursor(row_factory=dict_row) as cursor:
        return _found(cursor.execute(queries.load("configuration")[query]).fetchone(), "settings")


def callbacks(connection: Connection) -> Entity:
    """Where status callbacks may go beyond public https URLs."""
    return _settings(connection, "callbacks")


def put_callbacks(connection: Connection, value: Document) -> Entity:
    configuration.apply(connection, {"callbacks": value})
    return callbacks(connection)


def limits(connection: Connection) -> Entity:
    return _settings(connection, "limits")


def levels(connection: Connection) -> Entity:
    """Levels of service: the share of a queue each lower level keeps (docs/decisions/0020)."""
    return _settings(connection, "levels")


def put_levels(connection: Connection, value: Document) -> Entity:
    configuration.apply(connection, {"levels": value})
    return levels(connection)


def put_limits(connection: Connection, value: Document) -> Entity:
    configuration.apply(connection, {"limits": value})
    return limits(connection)


def retention(connection: Connection) -> int:
    """How long finished messages are kept, in seconds."""
    return int(_settings(connection, "retention")["retention_seconds"])


def put_retention(connection: Connection, value: Document) -> int:
    configuration.apply(connection, {"retention": value})
    return retention(connection)


def queue_scores(connection: Connection, destination_code: str | None) -> list[Entity]:
    return _all(connection, "queue_scores", destination=destination_code)


def open_pool(dsn: str, *, statement_timeout: float = 30.0, acquire_timeout: float = 10.0) -> ConnectionPool:
    """The admin side's connections (autocommit; each operation opens its own transactions): a statement runs
    at most `statement_timeout` seconds, taking a connection waits at most `acquire_timeout`."""
    options = f"-c statement_timeout={int(statement_timeout * 1000)}"
    return ConnectionPool(
        dsn,
        min_size=1,
        max_size=4,
        timeout=acquire_timeout,
        kwargs={"autocommit": True, "options": options},
        open=True,
    )


def run(pool: ConnectionPool, work: Callable[[Connection], Any]) -> Any:
    """Run one admin operation on a pooled connection (the API calls this in a worker thread)."""
    try:
        with pool.connection() as connection, translate():
            return work(connection)
    except PoolTimeout:
        raise FairlaneError("unavailable", "no database connection is free; retry") from None
