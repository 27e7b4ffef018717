"""A scratch database next to the one in use, migrated, for benchmarks."""

from urllib.parse import urlsplit, urlunsplit

import psycopg

from db import migrate


def scratch_dsn(dsn: str, database: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/" + database))


def recreate(dsn: str, database: str) -> str:
    """Drop and create `database` on the server of `dsn`, migrate it, return its DSN."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{database}"')
    scratch = scratch_dsn(dsn, database)
    migrate.upgrade(scratch)
    return scratch


def drop(dsn: str, database: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
