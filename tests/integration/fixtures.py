"""A small configuration used by many tests, applied through `fairlane apply`'s code path."""

from db import configuration
from service.model.configuration import parse_configuration

BASIC = {
    "tenant_sets": [{"name": "retail", "weight": 1}, {"name": "enterprise", "weight": 3}],
    "gateways": [{"name": "sim", "kind": "simulator", "url": "http://127.0.0.1:9/messages"}],
    "destinations": [
        {"code": "US-SC", "gateway": "sim", "rate": 100, "burst": 20},
        {"code": "US-LC", "gateway": "sim", "rate": 10},
        {"code": "GB", "gateway": "sim", "rate": 50},
        {"code": "GB-LDN", "gateway": "sim", "rate": 5},
    ],
    "tenants": [
        {
            "name": "acme",
            "tenant_set": "enterprise",
            "senders": [
                {"address": "55501", "type": "short_code"},
                {"address": "+15550100001", "type": "long_code"},
            ],
        },
        {
            "name": "globex",
            "tenant_set": "retail",
            "senders": [{"address": "+15550100002", "type": "long_code"}],
        },
        {
            "name": "initech",
            "tenant_set": "retail",
            "senders": [{"address": "INITECH", "type": "alphanumeric"}],
        },
        {"name": "hooli", "tenant_set": "retail"},
    ],
    "routes": [
        {"prefix": "+1", "sender_type": "short_code", "destination": "US-SC"},
        {"prefix": "+1", "sender_type": "long_code", "destination": "US-LC"},
        {"prefix": "+44", "sender_type": "long_code", "destination": "GB"},
        {"prefix": "+44", "sender_type": "alphanumeric", "destination": "GB"},
        {"prefix": "+4420", "sender_type": "alphanumeric", "destination": "GB-LDN"},
    ],
}


def apply_config(connection, document: dict) -> configuration.Result:
    """A configuration document (as read from TOML) validated and applied, as `fairlane apply` does."""
    return configuration.apply(connection, parse_configuration(document).model_dump())


def apply_basic(connection, **overrides) -> configuration.Result:
    return apply_config(connection, {**BASIC, **overrides})


OUTBOX_COLUMNS = (
    "tenant",
    "recipient",
    "body",
    "sender",
    "destination",
    "idempotency_key",
    "send_at",
    "validity_seconds",
    "status_callback",
)


def submit(connection, **fields) -> int:
    """fairlane.submit with named arguments; returns the message id."""
    names = ", ".join(f"{name} => %({name})s" for name in fields)
    return connection.execute(f"SELECT fairlane.submit({names})", fields).fetchone()[0]


def insert_outbox(connection, rows: list[dict]) -> None:
    """One multi-row INSERT ... VALUES into fairlane.outbox."""
    placeholders = ", ".join("(" + ", ".join(f"%(r{i}_{c})s" for c in OUTBOX_COLUMNS) + ")" for i in range(len(rows)))
    params = {f"r{i}_{c}": row.get(c) for i, row in enumerate(rows) for c in OUTBOX_COLUMNS}
    connection.execute(f"INSERT INTO fairlane.outbox ({', '.join(OUTBOX_COLUMNS)}) VALUES {placeholders}", params)


def error_detail(error) -> dict:
    import json

    return json.loads(error.diag.message_detail)
