"""Reading the SQL that is code: sql/functions/*_vN.sql and sql/views/*_vN.sql, run by migrations."""

from pathlib import Path

SQL_ROOT = Path(__file__).resolve().parent.parent / "sql"


def read_sql(relative_path: str) -> str:
    """The text of a file under sql/, e.g. ``read_sql("functions/accept_v1.sql")``."""
    return (SQL_ROOT / relative_path).read_text(encoding="utf-8")


def execute_sql(connection: object, sql: str) -> None:
    """Run a multi-statement SQL text on an Alembic/SQLAlchemy connection without parameter parsing."""
    raw = connection.connection.driver_connection  # type: ignore[attr-defined]
    raw.execute(sql)


def read_function(relative_path: str, name: str) -> str:
    """One `CREATE FUNCTION fairlane.<name>(...) ... $$;` statement of a file under sql/, for a migration's
    downgrade that brings back a function a later version replaced."""
    text = read_sql(relative_path)
    start = text.index(f"CREATE FUNCTION fairlane.{name}(")
    end = text.index("\n$$;", start) + len("\n$$;")
    return text[start:end]
