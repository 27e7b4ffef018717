"""The `fairlane` command as a user runs it: real processes, the embedded server, psql-style SQL."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from db import embedded, migrate
from tests.integration.processes import Process, call_api, free_port, wait_until

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
    port = free_port()
    run = Process(["run", "--port", str(port)], env=_env(FAIRLANE_LOG_LEVEL="INFO"), cwd=tmp_path)
    try:
        _run_session(run, tmp_path, port)
    finally:
        run.stop()
        embedded.stop(tmp_path / ".fairlane" / "pgdata")


def _run_session(run, tmp_path, port):
    run.wait_for_line("fairlane is up", timeout=120)
    text = "".join(run.seen)
    assert "created destination US-SC" in text
    key = re.search(r"API key of tenant demo \(new for this run\): (fl_\S+)", text).group(1)
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

    run.signal(signal.SIGINT)
    status = run.wait(timeout=90)
    assert status == 0, "".join(run.seen[-10:]) + "".join(_drain(run))
    assert "fairlane stopped" in "".join(run.seen) + "".join(_drain(run))
    assert not embedded.is_running(tmp_path / ".fairlane" / "pgdata")
    with pytest.raises(OSError):
        call_api(base, "GET", "/healthz", key)[1]


def _line(process, text):
    """The first line with `text` the process printed, waiting for it when it has not come yet."""
    for line in process.seen:
        if text in line:
            return line
    return process.wait_for_line(text, timeout=60)


def _drain(process):
    process.reader.join(timeout=10)
    while not process.lines.empty():
        yield process.lines.get()


def test_commands_against_database_url(dsn, tmp_path):
    env = _env(DATABASE_URL=dsn)
    head = migrate.head_revision()
    assert _fairlane("db", "upgrade", cwd=tmp_path, env=env).stdout.strip() == f"database at revision {head}"
    assert _fairlane("db", "url", cwd=tmp_path, env=env).stdout.strip() == dsn
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
