"""The `fairlane` command as a user runs it: real processes, the embedded server, psql-style SQL."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from db import embedded, migrate

FAIRLANE = [sys.executable, "-m", "service.cli"]
ROOT = Path(__file__).resolve().parents[2]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "FAIRLANE_DATA_DIR")}
    env["PYTHONPATH"] = str(ROOT)
    return {**env, **extra}


def _fairlane(*args, cwd, env=None):
    return subprocess.run([*FAIRLANE, *args], cwd=cwd, env=env or _env(), capture_output=True, text=True, timeout=120)


def test_run_on_a_fresh_directory(tmp_path):
    """The README's first command: embedded PostgreSQL up, migrated, example configuration applied, stats
    printed; a thousand messages inserted with one INSERT ... SELECT show in queue_state; a bad row gets an
    error naming the field; Ctrl-C stops it all cleanly."""
    with subprocess.Popen([*FAIRLANE, "run"], cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, text=True) as run:
        _run_session(run, tmp_path)


def _run_session(run, tmp_path):
    try:
        output = []
        for line in run.stdout:
            output.append(line)
            if line.startswith("fairlane is up"):
                break
        text = "".join(output)
        assert "created destination US-SC" in text and "API key for tenant demo (shown once): fl_" in text
        assert "destinations (3)" in text

        url = _fairlane("db", "url", cwd=tmp_path)
        assert url.returncode == 0 and "started" not in url.stderr
        dsn = url.stdout.strip()
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(
                "INSERT INTO fairlane.outbox (tenant, recipient, body) "
                "SELECT 'demo', '+1555' || lpad(i::text, 7, '0'), 'hello ' || i FROM generate_series(1, 1000) i"
            )
            depth = connection.execute("SELECT depth FROM fairlane.queue_state WHERE tenant = 'demo'").fetchone()[0]
            assert depth == 1000
            with pytest.raises(psycopg.Error) as raised:
                connection.execute(
                    "INSERT INTO fairlane.outbox (tenant, recipient, body) VALUES ('demo', '+1555', 'x')"
                )
            assert "recipient '+1555' is not an E.164 number" in str(raised.value)

        stats = _fairlane("stats", cwd=tmp_path)
        assert stats.returncode == 0
        assert any(
            line.split()[:5] == ["US-10DLC", "self-serve", "demo", "+15550100002", "1000"]
            for line in stats.stdout.splitlines()
        )

        run.send_signal(signal.SIGINT)
        assert run.wait(timeout=60) == 0
        assert not embedded.is_running(tmp_path / ".fairlane" / "pgdata")
    finally:
        if run.poll() is None:
            run.kill()
        embedded.stop(tmp_path / ".fairlane" / "pgdata")


def test_commands_against_database_url(dsn, tmp_path):
    env = _env(DATABASE_URL=dsn)
    head = migrate.head_revision()
    assert _fairlane("db", "upgrade", cwd=tmp_path, env=env).stdout.strip() == f"database at revision {head}"
    assert _fairlane("db", "url", cwd=tmp_path, env=env).stdout.strip() == dsn
    applied = _fairlane("apply", str(ROOT / "examples" / "fairlane.toml"), cwd=tmp_path, env=env)
    assert applied.returncode == 0 and "created tenant acme" in applied.stdout
    again = _fairlane("apply", str(ROOT / "examples" / "fairlane.toml"), cwd=tmp_path, env=env)
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
