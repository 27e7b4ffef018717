"""The `fairlane` command as a user runs it: real processes, the embedded server, psql-style SQL."""

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from db import embedded, migrate
from tests.integration.processes import Process, call_api, free_port, group_members, wait_until

FAIRLANE = [sys.executable, "-m", "service.cli"]
ROOT = Path(__file__).resolve().parents[2]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "FAIRLANE_DATA_DIR")}
    env["PYTHONPATH"] = str(ROOT)
    return {**env, **extra}


def _fairlane(*args, cwd, env=None):
    return subprocess.run([*FAIRLANE, *args], cwd=cwd, env=env or _env(), capture_output=True, text=True, timeout=120)


def test_run_on_a_fresh_directory(tmp_path):
    """The README's first command on an empty directory: embedded PostgreSQL up, migrated, example
    configuration applied, then the API, two dispatchers, the callback sender and the carrier simulator as
    supervised processes. A message sent with the printed key is delivered; a thousand rows inserted with
    one INSERT ... SELECT are accepted and a bad row gets an error naming the field; a dispatcher killed with
    SIGKILL is restarted; Ctrl-C stops everything and the embedded server."""
    port = free_port(following=2)
    run = _start(tmp_path, port)
    try:
        _run_session(run, tmp_path, port)
    finally:
        run.stop()
        embedded.stop(tmp_path / ".fairlane" / "pgdata")


def _run_session(run, tmp_path, port):
    run.wait_for_line("fairlane is up", timeout=120)
    text = "".join(run.seen)
    assert "created destination US-SC" in text
    key = re.search(r"API key of tenant demo: (fl_\S+)", text).group(1)
    token = re.search(r"admin token: (\S+)", text).group(1)
    assert f"http://127.0.0.1:{port}/dashboard#token={token}" in text
    _line(run, "api listening")
    _line(run, "simulator listening")

    base = f"http://127.0.0.1:{port}"
    message = call_api(base, "POST", "/v1/messages", key, {"to": "+15551234567", "body": "hello"})[1]
    delivered = wait_until(
        lambda: call_api(base, "GET", f"/v1/messages/{message['id']}", key)[1]["status"] == "delivered",
        timeout=60,
        message="the message delivered through the simulator",
    )
    assert delivered
    assert call_api(base, "GET", "/v1/admin/routes", token)[1]["routes"]

    url = _fairlane("db", "url", cwd=tmp_path)
    assert url.returncode == 0 and "started" not in url.stderr
    dsn = url.stdout.strip()
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(
            "INSERT INTO fairlane.outbox (tenant, recipient, body) "
            "SELECT 'demo', '+1555' || lpad(i::text, 7, '0'), 'hello ' || i FROM generate_series(1, 1000) i"
        )
        count = connection.execute("SELECT count(*) FROM fairlane.messages WHERE body LIKE 'hello %'").fetchone()[0]
        assert count == 1000
        with pytest.raises(psycopg.Error) as raised:
            connection.execute("INSERT INTO fairlane.outbox (tenant, recipient, body) VALUES ('demo', '+1555', 'x')")
        assert "recipient '+1555' is not an E.164 number" in str(raised.value)

    stats = _fairlane("stats", cwd=tmp_path)
    assert stats.returncode == 0 and "US-10DLC" in stats.stdout

    dispatcher_pid = int(_line(run, "dispatcher started").rsplit("pid=", 1)[1])
    os.kill(dispatcher_pid, signal.SIGKILL)
    run.wait_for_line("child exited", timeout=30)
    run.wait_for_line("child restarted", timeout=30)

    run.signal(signal.SIGINT)  # to the supervisor alone
    status = run.wait(timeout=90)
    output = run.output()
    assert status == 0, output[-3000:]
    assert "fairlane stopped" in output
    assert not embedded.is_running(tmp_path / ".fairlane" / "pgdata")
    with pytest.raises(OSError):
        call_api(base, "GET", "/healthz", key)[1]


def _line(process, text):
    """The first line with `text` the process printed, waiting for it when it has not come yet."""
    for line in process.seen:
        if text in line:
            return line
    return process.wait_for_line(text, timeout=60)


def _start(directory, port):
    return Process(["run", "--port", str(port)], env=_env(FAIRLANE_LOG_LEVEL="INFO"), cwd=directory)


def _wait_until_up(run, workers=2):
    """Wait for the banner and for every child to serve; return the banner's text."""
    run.wait_for_line("fairlane is up", timeout=120)
    for text, count in (("api listening", 1), ("simulator listening", 1), ("callbacks started", 1)):
        run.wait_for_lines(text, count, timeout=60)
    run.wait_for_lines("dispatcher started", workers, timeout=60)
    return "".join(run.seen)


def _banner(text, pattern):
    return re.search(pattern, text).group(1)


def _deliver(base, key, body):
    """Send one message with the API key and wait until its receipt says delivered; return its body."""
    status, message = call_api(base, "POST", "/v1/messages", key, {"to": "+15551234567", "body": body})
    assert status == 202, message
    wait_until(
        lambda: call_api(base, "GET", f"/v1/messages/{message['id']}", key)[1]["status"] == "delivered",
        timeout=60,
        message=f"message {message['id']} delivered",
    )
    return body


def _received(simulator):
    """The bodies of the messages the simulator took (message ids are per database: both runs have a 1)."""
    with urllib.request.urlopen(f"{simulator}/received", timeout=30) as response:
        return {item["body"] for item in json.loads(response.read())}


def _assert_stopped_cleanly(run, status, *, served=True):
    """Exit status 0, no error, every child stopped (drained, when it was serving), nothing left running."""
    output = run.output()
    assert status == 0, output[-3000:]
    assert " ERROR " not in output and "Traceback" not in output, output[-3000:]
    assert "fairlane stopped" in output
    if served:
        assert output.count("dispatcher stopped") == 2 and "callbacks stopped" in output, output[-3000:]
    assert not run.remaining()
    return output


@pytest.mark.timeout(300)
def test_signals_to_the_whole_group_stop_everything_cleanly(tmp_path):
    """A terminal's Ctrl-C signals the whole foreground group, and so do `kill -- -PGID` and systemd's
    default stop: each child gets the signal itself and then the supervisor's SIGTERM. Each drains and
    exits 0, `fairlane run` exits 0 and logs no error, the embedded server it started is stopped and no
    process of the group is left: Ctrl-C on a fresh directory, SIGTERM on a second start, and Ctrl-C while
    the children are still starting (their stop signals wait until their handlers are in place)."""
    for signum, when in ((signal.SIGINT, "serving"), (signal.SIGTERM, "serving"), (signal.SIGINT, "starting")):
        _signal_the_group(tmp_path, signum, when)


def _signal_the_group(directory, signum, when):
    pgdata = directory / ".fairlane" / "pgdata"
    port = free_port(following=2)
    run = _start(directory, port)
    try:
        if when == "serving":
            _wait_until_up(run)
        else:
            run.wait_for_line("fairlane is up", timeout=120)
            wait_until(lambda: len(group_members(run.pid)) == 6, message="the five children started")
        run.signal_group(signum)
        _assert_stopped_cleanly(run, run.wait(timeout=90), served=when == "serving")
        assert not embedded.is_running(pgdata)
        with pytest.raises(OSError):
            call_api(f"http://127.0.0.1:{port}", "GET", "/healthz", "-")
    finally:
        run.stop()
        embedded.stop(pgdata)


@pytest.mark.timeout(300)
def test_two_runs_at_once_each_with_its_own_simulator(tmp_path):
    """Two `fairlane run` in two directories at the same time: the example gateway's simulator port (8099)
    can be had by one of them at most; the other's simulator gets a free port, its gateway's URL follows and
    its banner says so. Both come up and deliver a message through their own simulator."""
    directories = [tmp_path / "one", tmp_path / "two"]
    ports = [free_port(following=2)]
    ports.append(free_port(following=2))
    while abs(ports[1] - ports[0]) <= 2:
        ports[1] = free_port(following=2)
    runs = []
    try:
        for directory, port in zip(directories, ports, strict=True):
            directory.mkdir()
            runs.append(_start(directory, port))
        banners = [_wait_until_up(run) for run in runs]
        simulators = [_banner(text, r"simulator:\s+(http://\S+)/stats") for text in banners]
        assert simulators[0] != simulators[1]
        for simulator, text in zip(simulators, banners, strict=True):
            if simulator != "http://127.0.0.1:8099":  # moved, at least one of them: the gateway follows
                moved = f"updated gateway carrier-sim: url http://127.0.0.1:8099/messages -> {simulator}/messages"
                assert "port 8099 of gateway carrier-sim's simulator is taken" in text and moved in text, text
        bodies = []
        for port, text in zip(ports, banners, strict=True):
            key = _banner(text, r"API key of tenant demo: (fl_\S+)")
            bodies.append(_deliver(f"http://127.0.0.1:{port}", key, f"hello from {port}"))
        for own, other, simulator in ((bodies[0], bodies[1], simulators[0]), (bodies[1], bodies[0], simulators[1])):
            received = _received(simulator)
            assert own in received and other not in received
        for run in runs:
            run.signal_group(signal.SIGTERM)
        for run in runs:
            _assert_stopped_cleanly(run, run.wait(timeout=90))
    finally:
        for run in runs:
            run.stop()
        for directory in directories:
            embedded.stop(directory / ".fairlane" / "pgdata")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="children follow their supervisor on Linux")
@pytest.mark.timeout(300)
def test_children_do_not_outlive_a_killed_run(tmp_path):
    """`kill -9` of `fairlane run` itself: every child gets SIGTERM from the kernel, drains and exits within
    seconds (none is left holding its port or the output pipe), and a new `fairlane run` in the same
    directory starts cleanly on the same ports, reusing the embedded server, which outlives them on
    purpose."""
    port = free_port(following=2)
    first = _start(tmp_path, port)
    second = None
    try:
        banner = _wait_until_up(first)
        simulator = _banner(banner, r"simulator:\s+(http://\S+)/stats")
        first_key = _banner(banner, r"API key of tenant demo: (fl_\S+)")
        assert len(group_members(first.pid)) == 6
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        wait_until(lambda: not first.remaining(), timeout=30, message="every child of the killed run exited")
        output = first.output(timeout=10)
        assert output.count("dispatcher stopped") == 2 and "callbacks stopped" in output, output[-3000:]

        second = _start(tmp_path, port)
        text = _wait_until_up(second)
        assert f"api listening on http://127.0.0.1:{port}" in text
        assert _banner(text, r"simulator:\s+(http://\S+)/stats") == simulator
        assert "is taken" not in text and "child exited" not in text
        key = _banner(text, r"API key of tenant demo: (fl_\S+)")
        assert key == first_key  # kept in the data directory's run-keys.json, not minted per start
        assert _deliver(f"http://127.0.0.1:{port}", key, "after kill -9") in _received(simulator)
        second.signal_group(signal.SIGTERM)
        _assert_stopped_cleanly(second, second.wait(timeout=90))
    finally:
        first.stop()
        if second is not None:
            second.stop()
        embedded.stop(tmp_path / ".fairlane" / "pgdata")


def test_commands_against_database_url(dsn, tmp_path):
    env = _env(DATABASE_URL=dsn)
    head = migrate.head_revision()
    assert _fairlane("db", "upgrade", cwd=tmp_path, env=env).stdout.strip() == f"database at revision {head}"
    assert _fairlane("db", "url", cwd=tmp_path, env=env).stdout.strip() == dsn
    parts = urlsplit(dsn)
    with_password = parts._replace(netloc=f"postgres:s3cret@{parts.netloc.rpartition('@')[2]}").geturl()
    shown = _fairlane("db", "url", cwd=tmp_path, env=_env(DATABASE_URL=with_password)).stdout.strip()
    assert shown == with_password.replace("s3cret", "***")
    asked = _fairlane("db", "url", "--with-password", cwd=tmp_path, env=_env(DATABASE_URL=with_password))
    assert asked.stdout.strip() == with_password
    applied = _fairlane("apply", str(ROOT / "service" / "cli" / "example.toml"), cwd=tmp_path, env=env)
    assert applied.returncode == 0 and "created tenant acme" in applied.stdout
    again = _fairlane("apply", str(ROOT / "service" / "cli" / "example.toml"), cwd=tmp_path, env=env)
    assert again.stdout.strip() == "no changes"
    assert not (tmp_path / ".fairlane").exists()  # no embedded server was started


def test_bad_configuration_file(dsn, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[[tenant_sets]]\nname = "x"\nweight = "heavy"\n')
    result = _fairlane("apply", str(config), cwd=tmp_path, env=_env(DATABASE_URL=dsn))
    assert result.returncode == 2
    assert result.stderr.strip() == "fairlane: config.tenant_sets[0].weight must be a number above 0, got 'heavy'"
    config.write_text("[[tenant_sets]\n")
    result = _fairlane("apply", str(config), cwd=tmp_path, env=_env(DATABASE_URL=dsn))
    assert result.returncode == 2 and "is not valid TOML" in result.stderr
    result = _fairlane("stats", cwd=tmp_path, env=_env(DATABASE_URL="mysql://x"))
    assert result.returncode == 2 and "DATABASE_URL must be a postgresql:// URL, got 'mysql://x'" in result.stderr
