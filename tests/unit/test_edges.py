"""Tenant-safe edges without a database (docs/decisions/0017): log values cannot forge lines, printed URLs hold no
password, and the callback sender's own checks of URLs and resolved addresses."""

import asyncio
import ipaddress
import logging

import pytest

from db.errors import FairlaneError
from db.messages import Submitted
from service.api.submitter import Submitter
from service.cli.logs import ExtraFormatter, escaped
from service.model import urls
from service.model.bounded import BoundedDict


def _record(**extra) -> logging.LogRecord:
    record = logging.LogRecord("fairlane", logging.WARNING, __file__, 1, "callback failed", None, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_log_values_cannot_forge_a_line():
    line = ExtraFormatter("%(levelname)s %(name)s: %(message)s").format(
        _record(url="https://x.example.com/a b\n2026-01-01 INFO fairlane: forged ok=1", event_id=7, attempts=2)
    )
    assert "\n" not in line
    assert line == (
        'WARNING fairlane: callback failed url="https://x.example.com/a b\\n2026-01-01 INFO fairlane: forged ok=1"'
        " event_id=7 attempts=2"
    )
    assert escaped("plain-value_1.2") == "plain-value_1.2"
    assert escaped('say "hi"') == '"say \\"hi\\""'
    assert escaped("caf\u00e9\x1b[31m") == '"caf\\u00e9\\u001b[31m"'


def test_a_traceback_is_indented_under_its_record():
    try:
        raise ValueError("remote said\nERROR forged")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "work failed", None, __import__("sys").exc_info())
    lines = ExtraFormatter("%(levelname)s %(name)s: %(message)s").format(record).split("\n")
    assert lines[0] == "ERROR x: work failed"
    assert all(line.startswith("    ") for line in lines[1:])


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:hunter2@db.example.com:5432/fairlane", "postgresql://app:***@db.example.com:5432/fairlane"),
        (
            "postgresql://app@/fairlane?host=/tmp/s&password=hunter2",
            "postgresql://app@/fairlane?host=/tmp/s&password=***",
        ),
        ("postgresql://postgres:@/fairlane?host=/tmp/pgdata", "postgresql://postgres:@/fairlane?host=/tmp/pgdata"),
        ("https://user:pw@hooks.example.com/x?token=abc#frag", "https://user:***@hooks.example.com/x"),
    ],
)
def test_printed_urls_hold_no_password(url, shown):
    assert urls.redacted(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/",
        "https://[::1]/",
        "https://[::ffff:10.0.0.1]/",
        "https://[64:ff9b::7f00:1]/",
        "https://[64:ff9b::a9fe:a9fe]/",
        "https://2130706433/",
        "https://127.1/",
        "https://0x7f000001/",
        "https://169.254.169.254/",
        "http://hooks.example.com/",
        "https://u:p@hooks.example.com/",
        "https://hooks.example.com:0/",
        "gopher://hooks.example.com/",
    ],
)
def test_the_sender_refuses_urls_itself(url):
    with pytest.raises(urls.Refused):
        urls.check_url(url, urls.Policy())


def test_the_allow_list_and_every_resolved_address():
    policy = urls.Policy.of(["10.20.0.0/16", "fd00::/8"], allow_http=True)
    assert urls.check_url("http://10.20.1.2:8080/x", policy) == ("10.20.1.2", 8080, ipaddress.ip_address("10.20.1.2"))
    assert urls.check_url("https://hooks.example.com/x", policy) == ("hooks.example.com", 443, None)
    public, private = ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("192.168.1.1")
    urls.resolved_allowed([public, ipaddress.ip_address("fd00::1")], policy)
    with pytest.raises(urls.Refused, match="192.168.1.1"):
        urls.resolved_allowed([public, private], policy)  # one private address among public ones is enough
    with pytest.raises(urls.Refused):
        urls.resolved_allowed([], policy)
    assert urls.endpoint("HTTPS://Hooks.Example.com:8443/a/b?c") == "https://hooks.example.com:8443"
    # NAT64 reaches the IPv4 address it embeds: judged by it
    nat64 = ipaddress.ip_address("64:ff9b::5db8:d822")  # 93.184.216.34
    assert urls.Policy().allows(nat64) and not urls.Policy().allows(ipaddress.ip_address("64:ff9b::a00:1"))
    assert urls.Policy.of(["10.0.0.0/8"], allow_http=False).allows(ipaddress.ip_address("64:ff9b::a00:1"))


def test_a_password_leaves_a_dsn_for_the_environment():
    assert urls.without_password("postgresql://app:hunter2@db.example.com/f?sslmode=require") == (
        "postgresql://app@db.example.com/f?sslmode=require",
        "hunter2",
    )
    assert urls.without_password("postgresql://app@/f?host=/tmp/s&password=pw") == (
        "postgresql://app@/f?host=/tmp/s",
        "pw",
    )
    assert urls.without_password("postgresql://app@/f?host=/tmp/s") == ("postgresql://app@/f?host=/tmp/s", None)


class _Submitter(Submitter):
    """The group commit's sharing without a database: each call answers every submission at once, and the calls
    made are kept (the tenants of each)."""

    def __init__(self, **options) -> None:
        super().__init__(None, **options)  # type: ignore[arg-type]
        self.calls: list[list[str]] = []

    async def _write(self, submissions):
        self.calls.append([submission["tenant"] for submission in submissions])
        return [Submitted({"tenant": submission["tenant"]}, False, None) for submission in submissions]


def _batch(tenant: str, size: int) -> list[dict]:
    return [{"tenant": tenant}] * size


async def test_the_group_commit_answers_tenants_it_has_forgotten():
    submitter = _Submitter(max_items=5, max_tenants=10)  # remembers the turns of 10 tenants at most
    # tasks start in order: every request arrives before the first call ends, 97 of them wait for a group
    requests = [asyncio.create_task(submitter.submit(f"t{i}", _batch(f"t{i}", 1))) for i in range(100)]
    async with asyncio.timeout(10):
        answers = await asyncio.gather(*requests)
    assert [answer[0].message for answer in answers] == [{"tenant": f"t{i}"} for i in range(100)]
    assert sum(len(call) for call in submitter.calls) == 100


async def test_a_light_tenant_is_taken_while_bulk_tenants_fill_the_intake():
    submitter = _Submitter()  # 20,000 waiting in all, 4,000 per tenant, the last 2,000 for light tenants

    async def offer(tenant: str, size: int) -> str:
        try:
            await submitter.submit(tenant, _batch(tenant, size))
            return "written"
        except FairlaneError as error:
            return error.code

    # five bulk tenants each offer five 1,000-message batches, then another tenant one message; every request
    # arrives before the first call ends
    bulk = [asyncio.create_task(offer(f"bulk{t}", 1000)) for t in range(5) for _ in range(5)]
    light = asyncio.create_task(offer("light", 1))
    async with asyncio.timeout(10):
        outcomes = await asyncio.gather(*bulk)
        assert await light == "written"
    # bulk0 and bulk1: three batches in the calls, 7,000 waiting; bulk2 and bulk3: 4,000 waiting each, their
    # fifth over their own limit; bulk4: waiting until 18,000 in all, then the room left is the light tenants'
    assert (
        outcomes == ["written"] * 10 + (["written"] * 4 + ["rate_limited"]) * 2 + ["written"] * 3 + ["unavailable"] * 2
    ), outcomes


def test_a_bounded_dict_forgets_the_least_recently_used():
    entries = BoundedDict[str, int](2)
    entries["a"], entries["b"] = 1, 2
    assert entries["a"] == 1  # a use: "b" is now the least recent
    entries["c"] = 3
    assert dict(entries) == {"a": 1, "c": 3}
    entries.setdefault("d", 4)
    assert list(entries) == ["c", "d"] and "a" not in entries and len(entries) == 2
