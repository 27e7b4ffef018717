"""The field types the shapes are made of, and how a failed validation is reported.

Every type checks exactly (no coercion: `"10"` is not an integer, `true` is not a number) and says what it
wants in words; `parse` turns pydantic's first problem into `Invalid`, whose message names the field path
and the value (`messages[3].body ...`, `config.destinations[0].burst must be an integer in 0..2147483647,
got -1`). The rules of messages themselves (E.164, lengths, routes) are the database's: these types only
make sure what reaches it has the right types."""

import datetime as dt
import ipaddress
import json
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler, GetJsonSchemaHandler, ValidationError
from pydantic_core import core_schema

M = TypeVar("M", bound=BaseModel)


class Invalid(ValueError):
    """Bad input: `message` names the field path (`field`) and, where it can be shown, the value."""

    def __init__(self, message: str, field: str | None = None, value: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.value = value


class FieldProblem(ValueError):
    """Raised by a shape's own check of several fields: the problem is reported at `field`, the message
    names the shape."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class Body(BaseModel):
    """A shape read from outside (a request body, a configuration table): unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, use_attribute_docstrings=True)


class Shape(BaseModel):
    """A shape fairlane answers with."""

    model_config = ConfigDict(
        frozen=True, populate_by_name=True, serialize_by_alias=True, use_attribute_docstrings=True
    )


def is_plain_text(value: str) -> bool:
    """Text PostgreSQL can store: no NUL character, no lone surrogate."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(value: object) -> str | None:
    """A value as an error shows it: JSON text, at most 100 characters; None for text PostgreSQL cannot
    store."""
    if value is None or (isinstance(value, str) and not is_plain_text(value)):
        return None
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:100]


class Check:
    """A field's own check, used as `Annotated[str, Text(64)]`: `check` validates (and may convert) a value
    or raises ValueError saying what the field must be; `json_schema` documents it."""

    def check(self, value: object) -> Any:
        raise NotImplementedError

    def json_schema(self) -> dict[str, Any]:
        raise NotImplementedError

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(self.check)

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler) -> Any:
        return self.json_schema()


@dataclass(frozen=True)
class Text(Check):
    """A string of at most `limit` characters without NUL or lone surrogates (non-empty unless `empty`)."""

    limit: int
    empty: bool = True

    def check(self, value: object) -> str:
        if not isinstance(value, str) or (not self.empty and not value):
            raise ValueError("must be a " + ("string" if self.empty else "non-empty string"))
        if not is_plain_text(value) or len(value) > self.limit:
            raise ValueError(f"must be at most {self.limit} characters, without NUL or lone surrogates")
        return value

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "minLength": 0 if self.empty else 1, "maxLength": self.limit}


@dataclass(frozen=True)
class Integer(Check):
    minimum: int = -(2**31)
    maximum: int = 2**31 - 1

    def check(self, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not self.minimum <= value <= self.maximum:
            raise ValueError(f"must be an integer in {self.minimum}..{self.maximum}")
        return value

    def json_schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.minimum, "maximum": self.maximum}


@dataclass(frozen=True)
class Boolean(Check):
    """true or false (not 1, not "true")."""

    def check(self, value: object) -> bool:
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value

    def json_schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True)
class NetworkText(Check):
    """An IP network in CIDR notation (an address alone is a network of one), given back normalised."""

    def check(self, value: object) -> str:
        wanted = "must be an IP network such as 10.0.0.0/8, 192.168.1.10 or fd00::/8"
        if not isinstance(value, str) or len(value) > 64 or not is_plain_text(value):
            raise ValueError(wanted)
        try:
            return str(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise ValueError(wanted) from None

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "maxLength": 64, "examples": ["10.0.0.0/8", "fd00::/8"]}


@dataclass(frozen=True)
class OneOf(Check):
    choices: tuple[str, ...]

    def check(self, value: object) -> str:
        if value not in self.choices:
            raise ValueError(f"must be one of {', '.join(self.choices)}")
        return str(value)

    def json_schema(self) -> dict[str, Any]:
        return {"enum": list(self.choices)}


@dataclass(frozen=True)
class TimeZone(Check):
    """An IANA time zone name such as UTC or America/New_York (PostgreSQL knows the same names)."""

    def check(self, value: object) -> str:
        wanted = "must be a time zone such as UTC or America/New_York"
        if not isinstance(value, str) or not 0 < len(value) <= 64 or not is_plain_text(value):
            raise ValueError(wanted)
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(wanted) from None
        return value

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "maxLength": 64, "examples": ["UTC", "America/New_York"]}


@dataclass(frozen=True)
class Fraction(Check):
    """A number from 0 to `maximum`, as a Decimal."""

    maximum: float = 1.0

    def check(self, value: object) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= self.maximum:
            raise ValueError(f"must be a number from 0 to {self.maximum}")
        return Decimal(str(value))

    def json_schema(self) -> dict[str, Any]:
        return {"type": "number", "minimum": 0, "maximum": self.maximum}


@dataclass(frozen=True)
class Positive(Check):
    """A number above 0 (and below 10^15), as a Decimal."""

    def check(self, value: object) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e15:
            raise ValueError("must be a number above 0")
        return Decimal(str(value))

    def json_schema(self) -> dict[str, Any]:
        return {"type": "number", "exclusiveMinimum": 0, "maximum": 1e15}


@dataclass(frozen=True)
class UtcTime(Check):
    """An ISO-8601 time with a UTC offset, given back as UTC ISO-8601 text."""

    def check(self, value: object) -> str:
        wanted = "must be an ISO-8601 time with a UTC offset, e.g. 2026-01-31T09:00:00Z"
        if not isinstance(value, str) or len(value) > 64 or not is_plain_text(value):
            raise ValueError(wanted)
        try:
            parsed = dt.datetime.fromisoformat(value)
            if parsed.tzinfo is None:
                raise ValueError("no UTC offset")
            return parsed.astimezone(dt.UTC).isoformat()  # PostgreSQL takes offsets up to 15:59 only
        except (ValueError, OverflowError):
            raise ValueError(wanted) from None

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "format": "date-time"}


@dataclass(frozen=True)
class Duration(Check):
    """A duration such as "90s", "15m", "24h" or "30d", as whole seconds within bounds."""

    minimum: int = 60
    maximum: int = 10 * 365 * 86400

    UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

    def check(self, value: object) -> int:
        wanted = (
            f"must be a duration such as 90s, 15m, 24h or 30d, from {format_duration(self.minimum)} "
            f"to {format_duration(self.maximum)}"
        )
        if not isinstance(value, str) or not 2 <= len(value) <= 12 or value[-1] not in self.UNITS:
            raise ValueError(wanted)
        number = value[:-1]
        if not (number.isascii() and number.isdigit()):
            raise ValueError(wanted)
        seconds = int(number) * self.UNITS[value[-1]]
        if not self.minimum <= seconds <= self.maximum:
            raise ValueError(wanted)
        return seconds

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": "^[0-9]{1,11}[smhd]$", "examples": ["90s", "15m", "24h", "30d"]}


def format_duration(seconds: int) -> str:
    """Seconds in the largest unit that divides them: 2592000 -> "30d", 300 -> "5m", 90 -> "90s"."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


PositiveNumber = Annotated[Decimal, Positive()]
UtcTimestamp = Annotated[str, UtcTime()]


def _location(path: str, location: Sequence[int | str]) -> str:
    field = path
    for part in location:
        if isinstance(part, int):
            field += f"[{part}]"
        else:
            field += f".{part}" if field else part
    return field


def parse(model: type[M], data: object, path: str = "") -> M:
    """`data` as a `model`, or `Invalid` naming the first problem's field under `path`."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise _first(error, path) from None


def _first(error: ValidationError, path: str) -> Invalid:
    problem = error.errors(include_url=False)[0]
    location = [part for part in problem["loc"] if not (isinstance(part, str) and part.startswith("function-"))]
    field = _location(path, location)
    value = problem.get("input")
    kind = problem["type"]
    if kind == "missing":
        return Invalid(f"{field} is required", field)
    if kind == "extra_forbidden":
        parent = _location(path, location[:-1])
        return Invalid(f"{parent or 'the body'} has unknown field {location[-1]!r}", field)
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return Invalid(f"{field or 'the body'} must be a table (a JSON object), got {shown(value)}", field or None)
    if kind == "list_type":
        return Invalid(f"{field} must be an array, got {shown(value)}", field)
    if kind == "value_error":
        cause = problem["ctx"]["error"]
        if isinstance(cause, FieldProblem):
            return Invalid(f"{field or 'the body'} {cause}", _location(path, [*location, cause.field]))
        value_text = shown(value)
        got = f", got {value!r}" if value_text is not None and "characters" not in str(cause) else ""
        return Invalid(f"{field} {cause}{got}", field or None, value_text)
    return Invalid(f"{field or 'the body'}: {problem['msg']}", field or None, shown(value))
