"""Migrations are proven: upgrade from empty matches the declared metadata; downgrade to base and upgrade
again replays identically; sql/ alone builds the same schema as the migrations (docs/decisions/0013)."""

import re
import uuid
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, pool

import migrations
import sql
from db import migrate, schema
from db.tables import metadata

SQL_DIR = Path(sql.__file__).parent
MIGRATIONS_DIR = Path(migrations.__file__).parent
FROZEN_DIR = MIGRATIONS_DIR / "sql"


def _schema_diff(dsn):
    engine = create_engine(migrate.sqlalchemy_url(dsn), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"include_schemas": True, "include_name": _only_fairlane, "compare_type": True}
        )
        diff = compare_metadata(context, metadata)
    engine.dispose()
    return diff


def _only_fairlane(name, type_, parent_names):
    """Schema fairlane, less the partitions of finished messages and events, which come and go."""
    if type_ == "schema":
        return name == "fairlane"
    return not (name and re.search(r"_p\d{8}_\d{4}", name))


CATALOG = """
SELECT 'nsp', n.nspname || ':' || coalesce(n.nspacl::text, '')
FROM pg_namespace n WHERE n.nspname = 'fairlane'
UNION ALL
SELECT 'rel', c.relname || ':' || c.relkind::text || ':' || c.relpersistence::text || ':'
              || coalesce(array_to_string(c.reloptions, ','), '') || ':' || c.relrowsecurity || ':'
              || coalesce(c.relacl::text, '')
FROM pg_class c WHERE c.relnamespace = 'fairlane'::regnamespace
UNION ALL
SELECT 'col', a.attrelid::regclass || '.' || a.attname || ':' || format_type(a.atttypid, a.atttypmod)
              || ':' || a.attnotnull || ':' || a.attidentity::text || ':'
              || coalesce(pg_get_expr(d.adbin, d.adrelid), '') || ':'
              -- the column's place among the live ones (a replayed table may hold dropped columns)
              || row_number() OVER (PARTITION BY a.attrelid ORDER BY a.attnum)
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE c.relnamespace = 'fairlane'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'con', conrelid::regclass || '.' || conname || ':' || pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = 'fairlane'::regnamespace
UNION ALL
SELECT 'idx', indexdef FROM pg_indexes WHERE schemaname = 'fairlane'
UNION ALL
-- the whole definition (arguments, result, language, volatility, security, settings, body) and the grants
SELECT 'fn', p.oid::regprocedure || ':' || md5(pg_get_functiondef(p.oid)) || ':' || coalesce(p.proacl::text, '')
FROM pg_proc p WHERE p.pronamespace = 'fairlane'::regnamespace
UNION ALL
SELECT 'view', viewname || ':' || md5(definition) FROM pg_views WHERE schemaname = 'fairlane'
UNION ALL
SELECT 'trg', tgname || ':' || pg_get_triggerdef(t.oid)
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
WHERE c.relnamespace = 'fairlane'::regnamespace AND NOT t.tgisinternal
UNION ALL
SELECT 'pol', policyname || ':' || tablename || ':' || cmd || ':' || roles::text || ':' || coalesce(qual, '')
FROM pg_policies WHERE schemaname = 'fairlane'
ORDER BY 1, 2
"""


PARTITION = re.compile(r"_p\d{8}_\d{4}")  # the partitions of finished messages and events, made as time goes


def _catalog(conn):
    """A fingerprint of everything in schema fairlane: the schema's grants, relations, columns, constraints,
    indexes, functions, views, triggers and policies (less the partitions that come and go with time)."""
    return [row for row in conn.execute(CATALOG).fetchall() if not PARTITION.search(row[1])]


@pytest.fixture
def scratch_dsn(embedded_server):
    """DSN of an empty database of its own, dropped after the test."""
    name = f"fairlane_scratch_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(embedded_server.dsn("postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield embedded_server.dsn(name)
    with psycopg.connect(embedded_server.dsn("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_upgrade_matches_declared_metadata(dsn):
    diff = _schema_diff(dsn)
    assert diff == [], "\n".join(map(str, diff))


def test_downgrade_to_base_and_upgrade_again(conn, dsn, monkeypatch):
    before = _catalog(conn)
    assert len(before) > 100
    migrate.downgrade(dsn, "base")
    assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'fairlane'").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM alembic_version").fetchone()[0] == 0

    loaded = set()
    read = schema.frozen

    def frozen(revision, path):
        loaded.add(f"{revision}/{path}")
        return read(revision, path)

    monkeypatch.setattr(schema, "frozen", frozen)  # Alembic imports each revision afresh
    migrate.upgrade(dsn)
    assert _catalog(conn) == before
    assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == migrate.head_revision()
    # upgrading from empty runs every frozen file
    assert loaded == {path.relative_to(FROZEN_DIR).as_posix() for path in FROZEN_DIR.rglob("*.sql")}


@pytest.mark.parametrize("previous", ["0010", "0006", "0005", "0004"])
def test_downgrade_restores_the_previous_revision_and_upgrade_again(conn, dsn, scratch_dsn, previous):
    head = _catalog(conn)
    migrate.downgrade(dsn, previous)
    migrate.upgrade(scratch_dsn, previous)
    with psycopg.connect(scratch_dsn) as replayed:
        assert _catalog(conn) == _catalog(replayed)
    migrate.upgrade(dsn)
    assert _catalog(conn) == head


def test_schema_built_from_sql_matches_the_migrations(conn, scratch_dsn):
    with psycopg.connect(scratch_dsn) as built:
        schema.build(built)
        built.commit()
        assert built.execute("SHOW check_function_bodies").fetchone()[0] == "on"
        assert _catalog(built) == _catalog(conn)


def test_frozen_sql_files_are_loaded_by_their_revision():
    """Every file under migrations/sql/NNNN/ is named by revision NNNN (files are never edited after release;
    a change is made in sql/ and copied into the next revision's folder)."""
    revisions = {path.name[:4]: path.read_text() for path in (MIGRATIONS_DIR / "versions").glob("[0-9]*.py")}
    frozen = sorted(FROZEN_DIR.glob("*/*/*.sql"))
    assert frozen
    for path in frozen:
        revision = path.parent.parent.name
        assert revision in revisions, path
        assert f'"{path.parent.name}/{path.name}"' in revisions[revision], path
    assert sorted(FROZEN_DIR.rglob("*.sql")) == frozen


CREATE = re.compile(r"^CREATE\s+(?:OR\s+REPLACE\s+)?(\w+)\s+([\w.]+)", re.MULTILINE | re.IGNORECASE)  # top level only


@pytest.mark.parametrize(("folder", "kind"), [("functions", "FUNCTION"), ("views", "VIEW"), ("types", "TYPE")])
def test_current_sql_files_hold_one_object_named_like_the_file(folder, kind):
    paths = sorted((SQL_DIR / folder).glob("*.sql"))
    assert paths
    for path in paths:
        assert CREATE.findall(path.read_text()) == [(kind, f"fairlane.{path.stem}")], path


def test_build_runs_every_current_sql_file():
    built = {SQL_DIR / path for path, _text in schema.current_files()}
    assert built == {path for path in SQL_DIR.rglob("*.sql") if "queries" not in path.relative_to(SQL_DIR).parts}


def test_upgrade_is_idempotent(dsn, conn):
    migrate.upgrade(dsn)
    assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == migrate.head_revision()
    # the outbox accepts rows after a second upgrade too
    with psycopg.connect(dsn) as connection:
        assert connection.execute("SELECT count(*) FROM fairlane.outbox").fetchone()[0] == 0
