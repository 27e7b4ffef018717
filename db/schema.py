"""The SQL that defines schema fairlane (docs/decisions/0013).

``sql/`` is the schema as it is at the head revision, one file per function, view and type plus
``tables.sql``, ``triggers.sql`` and ``security.sql``; ``build`` creates the schema from those files alone.
``migrations/sql/<revision>/`` holds, frozen, the SQL files each migration shipped; a migration reads them
with ``frozen`` and ``read_function``, so old migrations replay identically whatever ``sql/`` says today.
Both folders are found through their packages (``sql``, ``migrations``), so an installed wheel finds them as
package data.
"""

import re
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

import psycopg
from sqlalchemy.engine import Connection

# What build runs, in order. Types and views come in dependency order (each after those of its folder it
# names), then by name; functions by name (their bodies are not checked when created).
TABLES = "tables.sql"
FOLDERS = ("types", "functions", "views")
TRIGGERS = "triggers.sql"
SECURITY = "security.sql"

_REFERENCE = re.compile(r"\bfairlane\.(\w+)")


def _file(root: Traversable, path: str) -> Traversable:
    for part in path.split("/"):
        root = root / part
    return root


def current(path: str) -> str:
    """The text of a file under ``sql/``, e.g. ``current("functions/claim_v2.sql")``."""
    return _file(files("sql"), path).read_text(encoding="utf-8")


def frozen(revision: str, path: str) -> str:
    """The text of a file revision ``revision`` shipped, e.g. ``frozen("0001", "functions/accept_v1.sql")``
    (``migrations/sql/0001/functions/accept_v1.sql``)."""
    return _file(files("migrations") / "sql" / revision, path).read_text(encoding="utf-8")


def read_function(revision: str, path: str, name: str) -> str:
    """One ``CREATE FUNCTION fairlane.<name>(...) ... $$;`` statement of a frozen file, for a migration that
    brings back a function a later revision dropped or replaced."""
    return _statement(frozen(revision, path), f"CREATE FUNCTION fairlane.{name}(", "$$")


def read_type(revision: str, path: str, name: str) -> str:
    """One ``CREATE TYPE fairlane.<name> AS (...);`` statement of a frozen file."""
    return _statement(frozen(revision, path), f"CREATE TYPE fairlane.{name} AS", "")


def _statement(text: str, start_marker: str, quote: str) -> str:
    start = text.index(start_marker)
    end = start
    if quote:  # past the dollar-quoted body, which may hold semicolons
        end = text.index(quote, text.index(quote, start) + len(quote)) + len(quote)
    return text[start : text.index(";", end) + 1]


def or_replace(sql: str) -> str:
    """``CREATE FUNCTION`` / ``CREATE VIEW`` made ``CREATE OR REPLACE``, to restore an object in place (its
    grants and the objects that depend on it stay)."""
    return sql.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION").replace("CREATE VIEW", "CREATE OR REPLACE VIEW")


def execute_sql(connection: Connection, sql: str) -> None:
    """Run a multi-statement SQL text on an Alembic (SQLAlchemy, psycopg driver) connection, without
    parameter parsing."""
    driver = connection.connection.driver_connection
    assert driver is not None
    driver.execute(sql)


def current_files() -> list[tuple[str, str]]:
    """``(path, text)`` of every file under ``sql/`` (``queries/`` aside), in the order ``build`` runs them."""
    root = files("sql")
    result = [(TABLES, current(TABLES))]
    for folder in FOLDERS:
        texts = {
            entry.name.removesuffix(".sql"): entry.read_text(encoding="utf-8")
            for entry in (root / folder).iterdir()
            if entry.name.endswith(".sql")
        }
        names = sorted(texts) if folder == "functions" else _dependency_order(texts)
        result += [(f"{folder}/{name}.sql", texts[name]) for name in names]
    result += [(TRIGGERS, current(TRIGGERS)), (SECURITY, current(SECURITY))]
    return result


def _dependency_order(texts: dict[str, str]) -> list[str]:
    """Object names ordered so that each comes after the objects of the same folder it names, else by name."""
    needs = {name: set(_REFERENCE.findall(text)) & (texts.keys() - {name}) for name, text in texts.items()}
    ordered: list[str] = []
    while needs:
        ready = sorted(name for name, wanted in needs.items() if not wanted - set(ordered))
        if not ready:
            raise ValueError(f"circular references between {sorted(needs)}")
        ordered.append(ready[0])
        del needs[ready[0]]
    return ordered


def build(connection: psycopg.Connection[Any]) -> None:
    """Create schema fairlane from ``sql/`` alone, as the migrations leave it at head, in one transaction (a
    savepoint when the connection is in one already). Function bodies are checked when first called, not
    when created, so a function may use one created after it."""
    with connection.transaction():
        row = connection.execute("SELECT current_setting('check_function_bodies')").fetchone()
        assert row is not None
        connection.execute("SET LOCAL check_function_bodies = off")
        for _path, text in current_files():
            connection.execute(text)
        connection.execute("SELECT set_config('check_function_bodies', %s, true)", (row[0],))
