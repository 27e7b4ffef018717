"""Migrations are proven: upgrade from empty matches the declared metadata; downgrade to base and upgrade
again replays identically."""

import psycopg
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, pool

from db import migrate
from db.tables import metadata


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
    if type_ == "schema":
        return name == "fairlane"
    return True


CATALOG = """
SELECT 'rel', c.relname || ':' || c.relkind::text || ':' || c.relpersistence::text || ':'
              || coalesce(array_to_string(c.reloptions, ','), '')
FROM pg_class c WHERE c.relnamespace = 'fairlane'::regnamespace
UNION ALL
SELECT 'col', a.attrelid::regclass || '.' || a.attname || ':' || format_type(a.atttypid, a.atttypmod)
              || ':' || a.attnotnull
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
WHERE c.relnamespace = 'fairlane'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'con', conname || ':' || pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = 'fairlane'::regnamespace
UNION ALL
SELECT 'idx', indexdef FROM pg_indexes WHERE schemaname = 'fairlane'
UNION ALL
SELECT 'fn', p.oid::regprocedure || ':' || md5(p.prosrc)
FROM pg_proc p WHERE p.pronamespace = 'fairlane'::regnamespace
UNION ALL
SELECT 'view', viewname || ':' || md5(definition) FROM pg_views WHERE schemaname = 'fairlane'
UNION ALL
SELECT 'trg', tgname || ':' || pg_get_triggerdef(t.oid)
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
WHERE c.relnamespace = 'fairlane'::regnamespace AND NOT t.tgisinternal
UNION ALL
SELECT 'pol', policyname || ':' || tablename || ':' || coalesce(qual, '')
FROM pg_policies WHERE schemaname = 'fairlane'
ORDER BY 1, 2
"""


def _catalog(conn):
    """A fingerprint of everything in schema fairlane: relations, columns, constraints, indexes, functions,
    views, triggers and policies."""
    return conn.execute(CATALOG).fetchall()


def test_upgrade_matches_declared_metadata(dsn):
    diff = _schema_diff(dsn)
    assert diff == [], "\n".join(map(str, diff))


def test_downgrade_to_base_and_upgrade_again(conn, dsn):
    before = _catalog(conn)
    assert len(before) > 100
    migrate.downgrade(dsn, "base")
    assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'fairlane'").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM alembic_version").fetchone()[0] == 0
    migrate.upgrade(dsn)
    assert _catalog(conn) == before
    assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == migrate.head_revision()


def test_released_sql_files_are_loaded_by_a_migration():
    """Every sql/functions and sql/views file is executed by some migration (files are never edited
    after release; a change is a new _vN file plus a migration)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    migrations = "".join(p.read_text() for p in (root / "migrations" / "versions").glob("*.py"))
    for path in sorted((root / "sql").glob("*/*_v*.sql")):
        assert f'"{path.parent.name}/{path.name}"' in migrations, path


def test_upgrade_is_idempotent(dsn, conn):
    migrate.upgrade(dsn)
    assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == migrate.head_revision()
    # the outbox accepts rows after a second upgrade too
    with psycopg.connect(dsn) as connection:
        assert connection.execute("SELECT count(*) FROM fairlane.outbox").fetchone()[0] == 0
