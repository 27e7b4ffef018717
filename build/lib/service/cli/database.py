"""Which PostgreSQL the service uses: DATABASE_URL, or the embedded server in the data directory."""

from dataclasses import dataclass

from db import embedded
from service.cli.settings import Settings


@dataclass(frozen=True)
class Database:
    dsn: str
    started_embedded: bool
    """True when this process started the embedded server (and so should stop it when it is done)."""


def open_database(settings: Settings) -> Database:
    if settings.database_url:
        return Database(settings.database_url, started_embedded=False)
    was_running = embedded.is_running(settings.data_dir)
    dsn = embedded.start(settings.data_dir)
    return Database(dsn, started_embedded=not was_running)


def close_database(settings: Settings, database: Database) -> None:
    if database.started_embedded:
        embedded.stop(settings.data_dir)
