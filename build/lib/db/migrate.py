"""Schema changes, only through Alembic (migrations/)."""

from importlib.resources import files

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, pool

MIGRATIONS = str(files("migrations"))  # package data: found in a source tree and in an installed wheel alike


def sqlalchemy_url(dsn: str) -> str:
    """The SQLAlchemy URL (psycopg driver) for a libpq DSN such as ``postgresql://user@/db?host=/sock``."""
    for scheme in ("postgresql://", "postgres://"):
        if dsn.startswith(scheme):
            return "postgresql+psycopg://" + dsn[len(scheme) :]
    raise ValueError(f"DATABASE_URL must start with postgresql://, got {dsn!r}")


def _run(dsn: str, action: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    engine = create_engine(sqlalchemy_url(dsn), poolclass=pool.NullPool)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, action)(config, revision)
    engine.dispose()


def upgrade(dsn: str, revision: str = "head") -> None:
    _run(dsn, "upgrade", revision)


def downgrade(dsn: str, revision: str = "base") -> None:
    _run(dsn, "downgrade", revision)


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head
