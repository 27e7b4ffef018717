"""`fairlane apply`: declarative, idempotent, reporting what changed; errors name the field path."""

import re
import tomllib
from pathlib import Path

import pytest

from db import configuration
from db.errors import FairlaneError
from service.model.configuration import parse_configuration
from service.model.fields import Invalid
from tests.integration.fixtures import BASIC, apply_basic, apply_config

EXAMPLE = Path(__file__).resolve().parents[2] / "service" / "cli" / "example.toml"


def test_example_applies_once_then_changes_nothing(conn):
    config = parse_configuration(tomllib.loads(EXAMPLE.read_text())).model_dump()
    first = configuration.apply(conn, config)
    assert "created destination US-SC" in first.changes
    assert set(first.api_keys) == {"acme", "demo", "bulkco"}
    assert all(key.startswith("fl_") for key in first.api_keys.values())
    second = configuration.apply(conn, config)
    assert second.changes == [] and second.api_keys == {}
    # the API key is stored only as its SHA-256 digest
    stored = conn.execute(
        "SELECT key_hash FROM fairlane.api_keys k JOIN fairlane.tenants t ON t.id = k.tenant_id WHERE t.name = 'acme'"
    ).fetchone()[0]
    assert stored == configuration.hash_api_key(first.api_keys["acme"])


def test_changes_are_listed(conn):
    apply_basic(conn)
    changed = {
        **BASIC,
        "tenant_sets": [{"name": "retail", "weight": 2}, {"name": "enterprise", "weight": 3}],
        "destinations": [
            {**d, "rate": 200, "allocations": [{"tenant_set": "retail", "rate": 50}]} if d["code"] == "US-SC" else d
            for d in BASIC["destinations"]
        ],
        "routes": BASIC["routes"][:-1] + [{"prefix": "+4420", "sender_type": "alphanumeric", "destination": "GB"}],
    }
    result = apply_config(conn, changed)
    assert result.changes == [
        "updated tenant set retail: weight 1 -> 2",
        "updated destination US-SC: rate 100 -> 200",
        "created allocation US-SC/retail",
        "updated route +4420 alphanumeric -> GB",
    ]
    result = apply_config(conn, {**changed, "routes": BASIC["routes"][:2]})
    assert result.changes == [
        "deleted route +44 long_code -> GB",
        "deleted route +44 alphanumeric -> GB",
        "deleted route +4420 alphanumeric -> GB",
    ]
    result = apply_config(conn, {**changed, "destinations": BASIC["destinations"], "routes": BASIC["routes"][:2]})
    assert result.changes == ["updated destination US-SC: rate 200 -> 100", "deleted allocation US-SC/retail"]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            {"tenant_sets": [{"name": "a", "weight": -1}]},
            "config.tenant_sets[0].weight must be a number above 0, got -1",
        ),
        ({"tenant_sets": [{"weight": 1}]}, "config.tenant_sets[0].name is required"),
        (
            {"tenant_sets": [{"name": "a", "colour": "red"}]},
            "config.tenant_sets[0] has unknown field 'colour'",
        ),
        (
            {"gateways": [{"name": "g", "kind": "pigeon", "url": "http://x"}]},
            "config.gateways[0].kind must be one of",
        ),
        (
            {"destinations": [{"code": "X", "gateway": "g", "rate": 1, "burst": -1}]},
            "config.destinations[0].burst must be an integer in 0..",
        ),
        (
            {"destinations": [{"code": "X", "gateway": "g", "rate": 1, "allocations": [{"tenant_set": "a"}]}]},
            "config.destinations[0].allocations[0] must have exactly one of weight and rate",
        ),
        (
            {"tenants": [{"name": "t", "tenant_set": "s", "senders": [{"address": "1", "type": "pager"}]}]},
            "config.tenants[0].senders[0].type must be one of",
        ),
        (
            {"routes": [{"prefix": "+1", "sender_type": "long_code"}]},
            "config.routes[0].destination is required",
        ),
        ({"extra": 1}, "config has unknown field 'extra'"),
    ],
)
def test_parse_errors_name_the_field(document, message):
    with pytest.raises(Invalid) as raised:
        parse_configuration(document)
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"tenants": [{"name": "t", "tenant_set": "nope"}]}, "tenant t: unknown tenant set 'nope'"),
        (
            {"destinations": [{"code": "X", "gateway": "nope", "rate": 1}]},
            "destination X: unknown gateway 'nope'",
        ),
        (
            {"routes": [{"prefix": "+1", "sender_type": "long_code", "destination": "NOPE"}]},
            "route +1 long_code: unknown destination 'NOPE'",
        ),
    ],
)
def test_unknown_references(conn, document, message):
    with pytest.raises(FairlaneError, match=re.escape(message)):
        apply_config(conn, document)


def test_database_rules_are_translated_and_nothing_is_half_applied(conn):
    bad_sender = {
        "tenant_sets": [{"name": "s"}],
        "tenants": [{"name": "t", "tenant_set": "s", "senders": [{"address": "12", "type": "short_code"}]}],
    }
    with pytest.raises(FairlaneError) as raised:
        apply_config(conn, bad_sender)
    assert raised.value.field == "address" and "short_code" in raised.value.message
    assert conn.execute("SELECT count(*) FROM fairlane.tenant_sets").fetchone()[0] == 0
