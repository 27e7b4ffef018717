"""The embedded PostgreSQL server (the ``pgserver`` package) that fairlane uses when DATABASE_URL is unset.

The server runs from a data directory, listens only on a Unix socket inside it, is reused by later starts
and keeps running until ``stop``. Running as root works: pgserver then runs the server as its own system
user ``pgserver``. fairlane's tables live in a database named ``fairlane``.
"""

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import psycopg

DATABASE = "fairlane"
logger = logging.getLogger(__name__)


def _pgserver() -> Any:
    # platformdirs warns at import time when XDG_RUNTIME_DIR is unset (root shells, CI): harmless here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        return pgserver


def start(data_dir: Path) -> str:
    """Start (or reuse) the server in ``data_dir``; return its DSN (a Unix-socket URL). The server keeps
    running after this process exits, until ``stop``."""
    data_dir = data_dir.expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = _pgserver().get_server(data_dir, cleanup_mode=None)
    with psycopg.connect(server.get_uri(), autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
        if exists is None:
            try:
                connection.execute(f'CREATE DATABASE "{DATABASE}"')
            except psycopg.errors.DuplicateDatabase:
                pass  # another fairlane process created it a moment ago
    dsn: str = server.get_uri(DATABASE)
    logger.info("embedded postgresql ready", extra={"data_dir": str(data_dir), "dsn": dsn})
    return dsn


def is_running(data_dir: Path) -> bool:
    """Whether a server is running in ``data_dir``."""
    data_dir = data_dir.expanduser().resolve()
    if not (data_dir / "PG_VERSION").exists():
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver.utils import PostmasterInfo
    info = PostmasterInfo.read_from_pgdata(data_dir)
    return info is not None and bool(info.is_running())


def psql_path() -> Path:
    """The psql client bundled with the embedded server."""
    return Path(_pgserver().POSTGRES_BIN_PATH) / "psql"


def stop(data_dir: Path) -> bool:
    """Stop the server running in ``data_dir``; return False when none was running."""
    data_dir = data_dir.expanduser().resolve()
    if not is_running(data_dir):
        return False
    pgserver = _pgserver()
    pgserver.pg_ctl(["-w", "stop", "-m", "fast"], pgdata=data_dir, user=_server_user())
    logger.info("embedded postgresql stopped", extra={"data_dir": str(data_dir)})
    return True


def _server_user() -> str | None:
    return "pgserver" if os.geteuid() == 0 else None
