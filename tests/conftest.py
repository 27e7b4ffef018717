"""Test database: the embedded PostgreSQL, a migrated template database built once per session, and a
fresh clone of it per test (pytest-postgresql)."""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from pytest_postgresql import factories

from db import embedded, migrate


@dataclass(frozen=True)
class EmbeddedServer:
    """What pytest-postgresql's noproc factory reads from the fixture it depends on."""

    host: str
    port: int
    user: str = "postgres"
    password: str | None = None
    options: str = ""
    maintenance_dbname: str = "postgres"
    template_dbname: str = "template1"
    data_dir: Path = Path()

    def dsn(self, dbname: str, user: str | None = None) -> str:
        return f"postgresql://{user or self.user}@/{dbname}?host={self.host}&port={self.port}"


@pytest.fixture(scope="session")
def embedded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    data_dir = tmp_path_factory.mktemp("embedded") / "pgdata"
    dsn = embedded.start(data_dir)
    query = parse_qs(urlsplit(dsn).query)
    server = EmbeddedServer(host=query["host"][0], port=int(query.get("port", ["5432"])[0]), data_dir=data_dir)
    with psycopg.connect(server.dsn("postgres"), autocommit=True) as connection:
        for setting in ("fsync", "synchronous_commit", "full_page_writes"):
            connection.execute(f"ALTER SYSTEM SET {setting} = off")
        connection.execute("SELECT pg_reload_conf()")
    yield server
    embedded.stop(data_dir)


def load_schema(host: str, port: int, user: str, dbname: str, **_: object) -> None:
    migrate.upgrade(f"postgresql://{user}@/{dbname}?host={host}&port={port}")


fairlane_template = factories.postgresql_noproc(
    depends_on="embedded_server", dbname="fairlane_test", load=[load_schema]
)
postgresql = factories.postgresql("fairlane_template")


@pytest.fixture
def dsn(postgresql: psycopg.Connection, embedded_server: EmbeddedServer) -> str:
    """DSN of this test's own database (a clone of the migrated template)."""
    return embedded_server.dsn(postgresql.info.dbname)


@pytest.fixture
def conn(postgresql: psycopg.Connection) -> psycopg.Connection:
    """An autocommit connection to this test's database."""
    postgresql.autocommit = True
    return postgresql
