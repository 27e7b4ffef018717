"""Reading request bodies and parameters: JSON objects with typed fields, every problem a 4xx naming the
field and the value. The rules of messages themselves (E.164, lengths, ranges, routes) are the database's;
this layer only makes sure what reaches it has the right types."""

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from db.configuration import is_plain_text
from db.errors import FairlaneError

MAX_BATCH = 1000
MESSAGE_FIELDS = ("to", "body", "from", "destination", "send_at", "validity_seconds", "status_callback")


def invalid(field: str | None, value: object, message: str) -> FairlaneError:
    shown = None if value is None else (value if isinstance(value, str) else json.dumps(value))
    return FairlaneError("invalid_request", message, field=field, value=shown[:100] if shown else shown)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


async def json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object (415 unless it is declared JSON, 400 unless it is a JSON object)."""
    if request.content_type != "application/json":
        raise FairlaneError(
            "unsupported_media_type", f"Content-Type must be application/json, got {request.content_type!r}"
        )
    raw = await request.read()  # 413 beyond the app's client_max_size
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise invalid(None, None, "the body is not valid UTF-8") from None
    except ValueError as error:
        raise invalid(None, None, f"the body is not valid JSON: {error}") from None
    except RecursionError:
        raise invalid(None, None, "the body is nested too deeply") from None
    if not isinstance(body, dict):
        raise invalid(None, None, f"the body must be a JSON object, got {type(body).__name__}")
    return body


def only(body: Mapping[str, Any], allowed: Iterable[str], path: str = "") -> None:
    for key in body:
        if key not in allowed:
            raise invalid(path + key, None, f"unknown field {path + key!r}; allowed: {', '.join(allowed)}")


def text(body: Mapping[str, Any], key: str, *, required: bool = False, path: str = "", limit: int = 4096) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise invalid(path + key, None, f"{path + key} is required")
        return None
    if not isinstance(value, str):
        raise invalid(path + key, value, f"{path + key} must be a string, got {type(value).__name__}")
    if not is_plain_text(value) or len(value) > limit:
        raise invalid(
            path + key, None, f"{path + key} must be at most {limit} characters, without NUL or lone surrogates"
        )
    return value


def integer(
    body: Mapping[str, Any], key: str, *, path: str = "", minimum: int = -(2**31), maximum: int = 2**31 - 1
) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise invalid(path + key, value, f"{path + key} must be an integer in {minimum}..{maximum}, got {value!r}")
    return value


def timestamp(body: Mapping[str, Any], key: str, *, path: str = "") -> str | None:
    value = text(body, key, path=path, limit=64)
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError("no UTC offset")
        return parsed.astimezone(dt.UTC).isoformat()  # PostgreSQL takes offsets up to 15:59 only
    except (ValueError, OverflowError):
        raise invalid(
            path + key, value, f"{path + key} must be an ISO-8601 time with a UTC offset, e.g. 2026-01-31T09:00:00Z"
        ) from None


def submission(tenant: str, body: Mapping[str, Any], idempotency_key: str | None, *, path: str = "") -> dict[str, Any]:
    """A message request as the database's fairlane.submission_v1 fields."""
    allowed = MESSAGE_FIELDS + (("idempotency_key",) if path else ())
    only(body, allowed, path)
    if path:
        idempotency_key = text(body, "idempotency_key", path=path, limit=255)
    return {
        "tenant": tenant,
        "recipient": text(body, "to", required=True, path=path, limit=64),
        "body": text(body, "body", required=True, path=path, limit=10_000),
        "sender": text(body, "from", path=path, limit=64),
        "destination": text(body, "destination", path=path, limit=64),
        "send_at": timestamp(body, "send_at", path=path),
        "validity_seconds": integer(body, "validity_seconds", path=path),
        "status_callback": text(body, "status_callback", path=path, limit=4096),
        "idempotency_key": idempotency_key,
    }


def batch(body: Mapping[str, Any]) -> list[Any]:
    only(body, ("messages",))
    items = body.get("messages")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
        raise invalid("messages", None, f"messages must be an array of 1 to {MAX_BATCH} message objects")
    return items


def query_text(request: web.Request, key: str, limit: int = 200) -> str | None:
    raw = request.query.get(key)
    if raw is not None and (not is_plain_text(raw) or len(raw) > limit):
        raise invalid(key, None, f"{key} must be at most {limit} characters, without NUL or lone surrogates")
    return raw


def query_integer(request: web.Request, key: str, default: int, minimum: int, maximum: int) -> int:
    raw = request.query.get(key)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and minimum <= int(raw) <= maximum):
        raise invalid(key, raw, f"{key} must be an integer in {minimum}..{maximum}")
    return int(raw)


def identifier(raw: str) -> int | None:
    """A message id from a path or token (digits, below 2**63), or None."""
    if raw.isascii() and raw.isdigit() and len(raw) <= 19 and int(raw) < 2**63:
        return int(raw)
    return None
