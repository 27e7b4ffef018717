"""One frozen settings object, built from the environment at start and passed explicitly."""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


class SettingsError(ValueError):
    """A setting has a bad value; the message names the variable and the value."""


@dataclass(frozen=True)
class Settings:
    database_url: str | None
    """DATABASE_URL: an external PostgreSQL (>= 14); unset means the embedded server."""
    data_dir: Path
    """FAIRLANE_DATA_DIR: the embedded server's data directory (default .fairlane/pgdata)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Settings":
        url = environ.get("DATABASE_URL") or None
        if url is not None and not url.startswith(("postgresql://", "postgres://")):
            raise SettingsError(f"DATABASE_URL must be a postgresql:// URL, got {url!r}")
        data_dir = Path(environ.get("FAIRLANE_DATA_DIR") or ".fairlane/pgdata")
        if data_dir.exists() and not data_dir.is_dir():
            raise SettingsError(f"FAIRLANE_DATA_DIR must be a directory, got {str(data_dir)!r}")
        return cls(database_url=url, data_dir=data_dir)
