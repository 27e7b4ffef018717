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
    admin_token: str | None = None
    """FAIRLANE_ADMIN_TOKEN: the bearer token of the admin API (`fairlane api` makes one up when unset)."""
    tenant_rate: float = 100.0
    """FAIRLANE_TENANT_RATE: API requests per second per tenant and API process (bursts of twice that; a batch
    is one request); 0 for no limit."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Settings":
        url = environ.get("DATABASE_URL") or None
        if url is not None and not url.startswith(("postgresql://", "postgres://")):
            raise SettingsError(f"DATABASE_URL must be a postgresql:// URL, got {url!r}")
        data_dir = Path(environ.get("FAIRLANE_DATA_DIR") or ".fairlane/pgdata")
        if data_dir.exists() and not data_dir.is_dir():
            raise SettingsError(f"FAIRLANE_DATA_DIR must be a directory, got {str(data_dir)!r}")
        admin_token = environ.get("FAIRLANE_ADMIN_TOKEN") or None
        if admin_token is not None and len(admin_token) < 16:
            raise SettingsError("FAIRLANE_ADMIN_TOKEN must have at least 16 characters")
        raw_rate = environ.get("FAIRLANE_TENANT_RATE", "100")
        try:
            tenant_rate = float(raw_rate)
        except ValueError:
            tenant_rate = -1.0
        if not tenant_rate >= 0:
            raise SettingsError(f"FAIRLANE_TENANT_RATE must be a number >= 0, got {raw_rate!r}")
        return cls(database_url=url, data_dir=data_dir, admin_token=admin_token, tenant_rate=tenant_rate)
