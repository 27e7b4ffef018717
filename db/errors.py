"""Our errors, mapped from driver errors by SQLSTATE and constraint name (never by message text).

fairlane's own rules raise SQLSTATE class FL (sql/functions/raise_v1.sql) with a JSON DETAIL carrying the
stable error code, the field, the value and the row. What each code means to a client (HTTP status,
whether to retry) is the one table in service/model/errors.py.
"""

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import psycopg

# the connection broke, or the server went away (shut down, crashed, still starting up): a statement sent on it
# may have committed before the answer was lost (docs/decisions/0019)
CONNECTION_LOST = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
)
# the database could not be reached or the connection broke: the request may be retried later (psycopg's
# OperationalError: the admin side's connection failures and pool timeouts)
UNAVAILABLE = (*CONNECTION_LOST, TimeoutError, psycopg.OperationalError)
RETRYABLE_SQLSTATES = {"40001", "40P01", "55P03"}  # serialization failure, deadlock, lock not available
# the server is shutting down, crashed or is starting up (57P01-57P03)
SERVER_AWAY_SQLSTATES = {"57P01", "57P02", "57P03"}

# Constraint name -> (field, message) for configuration written directly to the tables.
CONSTRAINTS = {
    "tenant_sets_name_check": ("name", "tenant set names are 1-64 letters, digits, '_', '.' or '-'"),
    "tenants_name_check": ("name", "tenant names are 1-64 letters, digits, '_', '.' or '-'"),
    "gateways_name_check": ("name", "gateway names are 1-64 letters, digits, '_', '.' or '-'"),
    "destinations_code_check": ("code", "destination codes are 1-32 letters, digits, '_' or '-'"),
    "senders_address_check": (
        "address",
        "sender addresses are E.164 numbers (long_code, toll_free), 3-8 digits (short_code) "
        "or 1-11 letters, digits and spaces with a letter (alphanumeric)",
    ),
    "routes_prefix_check": ("prefix", "route prefixes are '+' followed by up to 15 digits"),
    "gateways_url_check": ("url", "gateway URLs look like http://host:port/path"),
    "gateways_receipts_token_check": ("receipts_token", "receipts tokens have 16 to 256 characters"),
    "tenants_status_callback_check": ("status_callback", "status_callback must be an http(s) URL"),
}


@dataclass
class FairlaneError(Exception):
    code: str
    message: str
    field: str | None = None
    value: str | None = None
    row: int | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


def from_diagnostic(sqlstate: str | None, message: str, detail: str | None, constraint: str | None) -> Exception | None:
    """Our error for a server error, or None when it is not one we translate."""
    if sqlstate is not None and sqlstate.startswith("FL"):
        try:
            info = json.loads(detail or "{}")
        except ValueError:
            info = {}
        return FairlaneError(
            code=info.pop("code", None) or "internal",
            message=message,
            field=info.pop("field", None),
            value=info.pop("value", None),
            row=info.pop("row", None),
            details=info,
        )
    if sqlstate in RETRYABLE_SQLSTATES:  # still failing after db.transaction's retries: busy, try again
        return FairlaneError(code="unavailable", message=message)
    if sqlstate in SERVER_AWAY_SQLSTATES or (sqlstate or "").startswith("08"):  # a restart: back in a moment
        return FairlaneError(code="unavailable", message="the database is unavailable; retry")
    if sqlstate == "57014":  # the pool's statement_timeout (db/pool.py): the database is too slow right now
        return FairlaneError(code="unavailable", message="the database took too long to answer; retry")
    if sqlstate == "23514" and constraint in CONSTRAINTS:
        field_name, explanation = CONSTRAINTS[constraint]
        return FairlaneError(code="invalid_request", message=explanation, field=field_name)
    if sqlstate in ("23505", "23503", "23514", "22P02", "22003", "22007", "22008", "23502"):
        return FairlaneError(code="invalid_request", message=message, details={"constraint": constraint})
    return None


@contextmanager
def translate() -> Iterator[None]:
    """Re-raise driver errors (psycopg or asyncpg) from fairlane's rules and constraints as FairlaneError."""
    try:
        yield
    except psycopg.Error as error:
        diag = error.diag
        translated = from_diagnostic(
            error.sqlstate, diag.message_primary or str(error), diag.message_detail, diag.constraint_name
        )
        if translated is None:
            raise
        raise translated from error
    except asyncpg.PostgresError as error:
        translated = from_diagnostic(
            error.sqlstate,
            str(getattr(error, "message", error)),
            getattr(error, "detail", None),
            getattr(error, "constraint_name", None),
        )
        if translated is None:
            raise
        raise translated from error
