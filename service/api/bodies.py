"""Reading requests: a JSON object body into one of the model's shapes, query parameters, ids from the
path; every problem a 4xx naming the field and the value."""

import json
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

from db.errors import FairlaneError
from service.model.fields import Invalid, is_plain_text, parse, shown

M = TypeVar("M", bound=BaseModel)


def invalid(field: str | None, value: object, message: str) -> FairlaneError:
    return FairlaneError("invalid_request", message, field=field, value=shown(value))


def from_invalid(error: Invalid) -> FairlaneError:
    return FairlaneError("invalid_request", error.message, field=error.field, value=error.value)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


async def json_object(request: web.Request, limit: int | None = None) -> dict[str, Any]:
    """The body as a JSON object (415 unless it is declared JSON, 400 unless it is a JSON object, 413 beyond
    `limit` bytes when given)."""
    if request.content_type != "application/json":
        raise FairlaneError(
            "unsupported_media_type", f"Content-Type must be application/json, got {request.content_type!r}"
        )
    # 413 beyond the app's client_max_size, or beyond `limit`
    raw = await request.read() if limit is None else await _read_at_most(request, limit)
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


async def _read_at_most(request: web.Request, limit: int) -> bytes:
    """The body, read no further than `limit` bytes (a chunked body included): 413 beyond that."""
    too_large = FairlaneError("payload_too_large", f"the body has more than {limit} bytes")
    if (request.content_length or 0) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(limit + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise too_large
    return b"".join(chunks)


def shape(model: type[M], data: object, path: str = "") -> M:
    """`data` as one of the model's shapes, or 400 naming the field."""
    try:
        return parse(model, data, path)
    except Invalid as error:
        raise from_invalid(error) from None


async def read(request: web.Request, model: type[M]) -> M:
    return shape(model, await json_object(request))


def only(query: Mapping[str, Any], allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    for key in query:
        if key not in allowed:
            raise invalid(key, None, f"unknown parameter {key!r}; allowed: {', '.join(allowed)}")


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


def path_text(request: web.Request, name: str) -> str:
    """A path parameter, 400 unless it is at most 200 characters of plain text."""
    value = request.match_info[name]
    if not is_plain_text(value) or len(value) > 200:
        raise invalid(name, None, f"{name} must be at most 200 characters, without NUL or lone surrogates")
    return value


def respond(shape_: BaseModel, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """A JSON answer in one of the model's shapes."""
    return web.Response(
        body=shape_.model_dump_json(by_alias=True, exclude_unset=True),  # optional fields given only when set
        status=status,
        headers=headers,
        content_type="application/json",
    )
