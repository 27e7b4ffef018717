"""The dashboard in a real browser: the carrier simulator, one dispatcher and the API run as processes while
three tenants' backlogs drain at 50 segments per second; headless Chromium (Debian's `chromium`, which
`make test` installs) loads /dashboard#token=... and the test reads the numbers the page rendered from the
DOM, twice, to see that they are live. It also saves a screenshot (to docs/dashboard.png as well when
FAIRLANE_SAVE_SCREENSHOT is set)."""

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.integration.api import ADMIN_TOKEN
from tests.integration.claiming import backlog
from tests.integration.fixtures import apply_config
from tests.integration.processes import ROOT, Process, Simulator, dispatcher, free_port, wait_until

pytestmark = pytest.mark.timeout(180)

CHROMIUM = Path("/usr/bin/chromium")
RATE = 50
TENANTS = {  # name: (tenant set, sender, backlog)
    "acme": ("enterprise", "+15550000001", 1500),
    "globex": ("startups", "+15550000002", 1000),
    "initech": ("startups", "+15550000003", 800),
}
DAILY = 1_000_000
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


def _configure(conn, simulator):
    config = {
        "tenant_sets": [{"name": "enterprise", "weight": 2}, {"name": "startups", "weight": 1}],
        "gateways": [{"name": "carrier", "kind": "simulator", "url": f"{simulator.url}/messages"}],
        "destinations": [
            # a daily cap that never binds here (sliding: no reset at midnight): the page shows its use
            {
                "code": "US",
                "gateway": "carrier",
                "rate": RATE,
                "burst": 5,
                "max_drain_seconds": 36000,
                "per_day": DAILY,
                "window": "sliding",
            }
        ],
        "tenants": [
            {"name": name, "tenant_set": tenant_set, "senders": [{"address": sender, "type": "long_code"}]}
            for name, (tenant_set, sender, _) in TENANTS.items()
        ],
        "routes": [{"prefix": "+1", "sender_type": "long_code", "destination": "US"}],
    }
    return apply_config(conn, config).api_keys


class Page(HTMLParser):
    """The numbers a dumped DOM shows: per destination its fields, per queue row its fields, and the
    page's own fields (`at`, `updates`); data-value holds each raw number. Templates are skipped."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.stack: list[tuple[str, dict[str, str | None]]] = []
        self.fields: dict[str, str] = {}
        self.destinations: dict[str, dict] = {}
        self.message = ""
        self._in_message = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag not in VOID:
            self.stack.append((tag, attributes))
        if any(t == "template" for t, _ in self.stack):
            return
        self._in_message = attributes.get("id") == "message" and "hidden" not in attributes
        field = attributes.get("data-field")
        if field is None:
            return
        value = attributes.get("data-value") or ""
        destination = next((a["data-destination"] for _, a in self.stack if "data-destination" in a), None)
        queue = next((a["data-queue-id"] for _, a in self.stack if "data-queue-id" in a), None)
        if destination is None:
            self.fields[field] = value
            return
        entry = self.destinations.setdefault(destination, {"queues": {}})
        if queue is not None:
            entry["queues"].setdefault(queue, {})[field] = value
        else:
            entry[field] = value

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        while self.stack:
            if self.stack.pop()[0] == tag:
                break
        self._in_message = False

    def handle_data(self, data):
        if self._in_message:
            self.message += data


def _chromium(profile: Path, url: str, *args: str, budget_ms: int = 4000) -> str:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the dashboard test needs Debian's chromium; `make test` installs it "
            "(or run `apt-get install --no-install-recommends chromium` as root)"
        )
    command = [
        str(CHROMIUM),
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        f"--user-data-dir={profile}",
        f"--virtual-time-budget={budget_ms}",
        *args,
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _get(url: str, token: str | None = None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _current_rate(base: str) -> float:
    return _get(f"{base}/v1/admin/dashboard", ADMIN_TOKEN)[1]["destinations"][0]["current_rate"]


def _backlog(conn) -> int:
    return conn.execute("SELECT coalesce(sum(queued_count), 0) FROM fairlane.queues").fetchone()[0]


def _numbers(fields: dict[str, str], names: tuple[str, ...]) -> dict[str, float]:
    return {name: float(fields[name]) for name in names}


def test_dashboard_shows_live_numbers_in_headless_chromium(conn, dsn, tmp_path, started):
    simulator = Simulator({"latency_ms": [1, 3], "destinations": {"US": {"rate": RATE, "burst": 5}}}, tmp_path)
    started.append(simulator)
    keys = _configure(conn, simulator)
    for tenant, (_, sender, count) in TENANTS.items():
        backlog(conn, tenant, sender, count)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api = Process(["api", "--port", str(port)], env={"DATABASE_URL": dsn, "FAIRLANE_ADMIN_TOKEN": ADMIN_TOKEN})
    started.append(api)
    api.wait_for_line("api listening")
    started.append(dispatcher(dsn))
    wait_until(lambda: simulator.stats()["received"] >= RATE, timeout=60, message="a second of traffic")

    # the JSON behind the page: admin only, numbers as numbers
    assert _get(f"{base}/v1/admin/dashboard")[0] == 401
    status, body = _get(f"{base}/v1/admin/dashboard", keys["acme"])
    assert (status, body["error"]["code"]) == (403, "forbidden")
    status, reading = _get(f"{base}/v1/admin/dashboard", ADMIN_TOKEN)
    assert status == 200
    (us,) = reading["destinations"]
    assert (us["destination"], us["quota_rate"], us["active_tenants"]) == ("US", RATE, 3)
    assert us["current_rate"] > 0
    assert {q["tenant"] for q in us["queues"]} == set(TENANTS)
    assert all(isinstance(q["depth"], int) and isinstance(q["score"], int | float) for q in us["queues"])
    (window,) = us["windows"]
    assert (window["window"], window["kind"], window["quota"]) == ("per_day", "sliding", DAILY)
    assert window["used"] >= RATE and window["used"] + window["remaining"] == DAILY

    url = f"{base}/dashboard#token={ADMIN_TOKEN}"
    first = Page(_chromium(tmp_path / "profile-1", url, "--dump-dom"))
    assert first.fields["updates"] and int(first.fields["updates"]) >= 2, first.fields  # it polls by itself
    assert first.fields["at"], first.fields
    shown = first.destinations["US"]
    figures = _numbers(shown, ("quota_rate", "current_rate", "utilisation", "backlog_messages", "active_tenants"))
    assert figures["quota_rate"] == RATE
    assert 0 < figures["current_rate"] <= RATE * 1.2
    assert figures["active_tenants"] == 3
    assert {row["tenant"] for row in shown["queues"].values()} == set(TENANTS)
    columns = ("depth", "portion", "recent_rate", "rate_per_portion", "score", "rank")
    for row in shown["queues"].values():
        assert row["tenant_set"] == TENANTS[row["tenant"]][0]
        assert row["sender"] == TENANTS[row["tenant"]][1]
        _numbers(row, columns)  # every column a number
        assert (row["level"], row["binding_limit"]) == ("normal", "rate")  # the daily cap is far from binding
    assert shown["window"] == "per_day" and float(shown["quota"]) == DAILY and float(shown["used"]) >= RATE
    depth = sum(float(row["depth"]) for row in shown["queues"].values())

    # later, once the dispatcher has drained more, the page shows other numbers
    wait_until(lambda: _backlog(conn) < depth - RATE, timeout=30, message="a second's worth more sent")
    second = Page(_chromium(tmp_path / "profile-2", url, "--dump-dom"))
    later = second.destinations["US"]
    assert second.fields["at"] != first.fields["at"]
    assert sum(float(row["depth"]) for row in later["queues"].values()) < depth
    assert float(later["backlog_messages"]) < figures["backlog_messages"]

    save = os.environ.get("FAIRLANE_SAVE_SCREENSHOT")
    if save:  # the picture in the docs shows the steady state (the current rate is a 10 s average)
        wait_until(lambda: _current_rate(base) >= 0.9 * RATE, timeout=60, interval=0.5, message="90% of the quota")
    screenshot = tmp_path / "dashboard.png"
    _chromium(tmp_path / "profile-3", url, f"--screenshot={screenshot}", "--window-size=1280,900")
    assert screenshot.read_bytes().startswith(b"\x89PNG") and screenshot.stat().st_size > 20_000
    if save:
        shutil.copyfile(screenshot, ROOT / "docs" / "dashboard.png")

    # a wrong token: a clear message, no numbers
    refused = Page(_chromium(tmp_path / "profile-4", f"{base}/dashboard#token=not-the-token", "--dump-dom"))
    assert "refused (HTTP 403)" in refused.message, refused.message
    assert refused.destinations == {}
