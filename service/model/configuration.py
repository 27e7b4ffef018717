"""The configuration's shapes, declared once: what `fairlane apply CONFIG.toml` reads, what the admin
API's PUT bodies carry (the same shapes less the fields a path names or a file alone holds) and what its
GETs answer. db/configuration.py applies them (as `model_dump()` gives them)."""

import datetime as dt
import math
from decimal import Decimal
from typing import Annotated, Any, Self

from pydantic import Field, model_validator

from service.model.fields import (
    Body,
    Boolean,
    Duration,
    FieldProblem,
    Fraction,
    Integer,
    NetworkText,
    OneOf,
    PositiveNumber,
    Shape,
    Text,
    TimeZone,
    parse,
)

SENDER_TYPES = ("long_code", "short_code", "toll_free", "alphanumeric")
WINDOW_KINDS = ("calendar", "sliding")
WINDOW_FIELDS = ("per_minute", "per_hour", "per_day", "reset_timezone", "window")
PRIORITIES = ("high", "normal", "bulk")
GATEWAY_KINDS = ("http", "simulator", "smpp")

Name = Annotated[str, Text(4096, empty=False)]
TonNpi = Annotated[list[Annotated[int, Integer(0, 255)]], Field(min_length=2, max_length=2)]
"""An SMPP address's [type of number, numbering plan indicator]."""
SMPP_FIELDS = (
    "host", "port", "system_id", "password", "system_type", "binds", "window", "enquire_link_seconds",
    "source_ton_npi", "dest_ton_npi", "concatenation", "message_id_tlv",
)  # fmt: skip
SMPP_DEFAULTS = {
    "system_type": "", "binds": 1, "window": 10, "enquire_link_seconds": Decimal(30), "dest_ton_npi": [1, 1],
    "concatenation": "udh",
}  # fmt: skip


class TenantSet(Body):
    name: Name
    weight: PositiveNumber = Decimal(1)


class Gateway(Body):
    name: Name
    kind: Annotated[str, OneOf(GATEWAY_KINDS)]
    url: Name | None = None
    """The provider's URL (http, simulator: required); an smpp gateway's is smpp://host:port."""
    timeout_seconds: PositiveNumber = Decimal(10)
    max_in_flight: Annotated[int, Integer(1)] = 100
    receipts_token: Name | None = None
    """The bearer token delivery receipts must carry (`Authorization: Bearer <receipts_token>`, 16-256
    characters); made up when a gateway is created without one, kept when a change leaves it out."""
    # --- kind smpp (docs/decisions/0016): an SMPP 3.4 session; receipts come back over it (deliver_sm) ---
    host: Name | None = None
    port: Annotated[int, Integer(1, 65535)] | None = None
    system_id: Annotated[str, Text(15, empty=False)] | None = None
    password: Annotated[str, Text(8)] | None = None
    """Never shown by the admin API."""
    system_type: Annotated[str, Text(12)] | None = None
    """Default empty."""
    binds: Annotated[int, Integer(1, 64)] | None = None
    """Transceiver binds at once, across all dispatcher processes (default 1)."""
    window: Annotated[int, Integer(1, 1000)] | None = None
    """Outstanding submit_sm per bind (default 10)."""
    enquire_link_seconds: PositiveNumber | None = None
    """Keep-alive interval (default 30)."""
    source_ton_npi: TonNpi | None = None
    """[ton, npi] of the sender (default by its form: +E.164 [1, 1], alphanumeric [5, 0], digits [0, 1])."""
    dest_ton_npi: TonNpi | None = None
    """[ton, npi] of the recipient (default [1, 1]: international, E.164)."""
    concatenation: Annotated[str, OneOf(("udh", "sar"))] | None = None
    """Long messages as parts with UDH concatenation headers (default) or sar_* TLVs."""
    message_id_tlv: Annotated[int, Integer(0x1400, 0x3FFF)] | None = None
    """A vendor-specific TLV tag in which each submit_sm carries the fairlane message id, the same on every
    attempt, for a carrier that takes it as an idempotency key (the simulator's: 0x1410); default none."""

    @model_validator(mode="after")
    def _kind_fields(self) -> Self:
        smpp = {name: getattr(self, name) for name in SMPP_FIELDS}
        if self.kind != "smpp":
            if self.url is None:
                raise FieldProblem("url", f"must have a url (kind {self.kind})")
            extra = next((name for name, value in smpp.items() if value is not None), None)
            if extra is not None:
                raise FieldProblem(extra, f"may have {extra} only when its kind is smpp")
            return self
        missing = next((name for name in ("host", "port", "system_id", "password") if smpp[name] is None), None)
        if missing is not None:
            raise FieldProblem(missing, f"must have {missing} (kind smpp)")
        url = f"smpp://{self.host}:{self.port}"
        if self.url is not None and self.url != url:
            raise FieldProblem("url", f"must have no url or {url} (kind smpp: made of host and port)")
        defaults = {name: value for name, value in SMPP_DEFAULTS.items() if smpp[name] is None}
        return self.model_copy(update={"url": url, **defaults})


class Allocation(Body):
    """A tenant set's share of one destination: a weight (instead of the set's own) or an absolute rate."""

    tenant_set: Name
    weight: PositiveNumber | None = None
    rate: PositiveNumber | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.weight is None) == (self.rate is None):
            raise FieldProblem("weight", "must have exactly one of weight and rate")
        return self


class Windows(Body):
    """Quota windows beside the per-second rate (docs/decisions/0020), of a destination or a sender: at most so
    many segments per minute, hour and day. A calendar window resets at the start of each minute, hour or day in
    `reset_timezone` (a day at local midnight); a sliding one counts the last 60 s, 3,600 s or 86,400 s."""

    per_minute: Annotated[int, Integer(1)] | None = None
    """Segments per minute."""
    per_hour: Annotated[int, Integer(1)] | None = None
    """Segments per hour."""
    per_day: Annotated[int, Integer(1)] | None = None
    """Segments per day."""
    reset_timezone: Annotated[str, TimeZone()] = "UTC"
    """The time zone calendar windows reset in (default UTC)."""
    window: Annotated[str, OneOf(WINDOW_KINDS)] = "calendar"
    """calendar (default): reset at each minute, hour, day; sliding: any 60 s, 3,600 s, 86,400 s."""


class DestinationFields(Windows):
    code: Name
    gateway: Name
    rate: PositiveNumber
    """Segments per second."""
    burst: Annotated[int, Integer(0)] | None = None
    """Default: a fifth of a second at the rate (SPEC's example: 100/s, burst 20), at least 1."""
    max_drain_seconds: Annotated[int, Integer(1)] = 14400
    default_validity_seconds: Annotated[int, Integer(1, 36000)] = 36000

    @model_validator(mode="after")
    def _default_burst(self) -> Self:
        if self.burst is None:
            return self.model_copy(update={"burst": max(1, math.ceil(self.rate / 5))})
        return self


class Destination(DestinationFields):
    allocations: list[Allocation] = []
    """The destination's whole allocation table."""


class Sender(Windows):
    address: Name
    type: Annotated[str, OneOf(SENDER_TYPES)]
    rate_cap: PositiveNumber | None = None
    """A carrier's per-number limit, segments per second."""


class TenantFields(Body):
    name: Name
    tenant_set: Name
    weight: PositiveNumber = Decimal(1)
    status_callback: Name | None = None


class Tenant(TenantFields):
    db_role: Name | None = None
    """A database role that may submit and read only this tenant's messages."""
    senders: list[Sender] = []


class Route(Body):
    prefix: Name
    sender_type: Annotated[str, OneOf(SENDER_TYPES)]
    destination: Name


class Routes(Body):
    routes: list[Route]
    """The whole routing table (an empty list removes it)."""


class Retention(Body):
    """How long finished messages and their events are kept (`[retention]`, `PUT /v1/admin/retention`)."""

    finished_messages: Annotated[int, Duration()] = Field("30d", validate_default=True)
    """A duration: "90s", "15m", "24h", "30d" (default 30d). After it a finished message and its events are
    gone (the API answers 404); usage (`fairlane.usage_daily`) stays."""


class Callbacks(Body):
    """Where status callbacks may go beyond public https URLs (`[callbacks]`, `PUT /v1/admin/callbacks`;
    docs/decisions/0017)."""

    allow_networks: list[Annotated[str, NetworkText()]] = Field([], max_length=100)
    """Networks callbacks may reach although they are not public (private deployments, tests), e.g.
    ["10.20.0.0/16"]; default none."""
    allow_http: Annotated[bool, Boolean()] = False
    """Whether plain http callback URLs are allowed; default https only."""


class Limits(Body):
    """Per-tenant limits (`[limits]`, `PUT /v1/admin/limits`)."""

    scheduled_per_tenant: Annotated[int, Integer(1, 100_000_000)] = 100_000
    """At most this many scheduled messages per tenant (further ones are refused with scheduled_overflow)."""


class Levels(Body):
    """Levels of service (`[levels]`, `PUT /v1/admin/levels`; docs/decisions/0020): inside a queue, high-priority
    messages go before normal ones and normal before bulk, except that each lower level with messages waiting
    keeps `minimum_share` of the queue's service."""

    minimum_share: Annotated[Decimal, Fraction(0.5)] = Field(Decimal("0.1"), validate_default=False)
    """From 0 to 0.5 (default 0.1): the share of a queue's segments normal and bulk each keep while higher
    levels wait too."""


class Configuration(Body):
    retention: Retention | None = None
    levels: Levels | None = None
    callbacks: Callbacks | None = None
    limits: Limits | None = None
    tenant_sets: list[TenantSet] = []
    gateways: list[Gateway] = []
    destinations: list[Destination] = []
    tenants: list[Tenant] = []
    routes: list[Route] | None = None
    """When present, the whole routing table."""


def parse_configuration(document: Any) -> Configuration:
    """A configuration document as read from TOML; `Invalid` names the field path (`config.tenants[0].name`)."""
    return parse(Configuration, document, "config")


# --- what the admin API answers ------------------------------------------------------------------------


class ApiKey(Shape):
    id: int
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    api_key: str | None = None
    """Only when the key is created."""


class TenantSetEntity(Shape):
    name: str
    weight: float


class TenantEntity(Shape):
    name: str
    tenant_set: str
    weight: float
    status_callback: str | None
    signing_secret: str | None = None
    """The Standard Webhooks secret of the tenant's status callbacks: only when the tenant is created or the
    secret rotated."""
    previous_signing_secret_valid_until: dt.datetime | None = None
    """After a rotation: until when callbacks are signed with the previous secret too."""
    api_keys: list[ApiKey]
    api_key: str | None = None
    """Only when the tenant is created."""


class WindowsEntity(Shape):
    per_minute: int | None = None
    per_hour: int | None = None
    per_day: int | None = None
    reset_timezone: str = "UTC"
    window: str = "calendar"


class SenderEntity(WindowsEntity):
    tenant: str
    address: str
    type: str
    rate_cap: float | None


class GatewayEntity(Shape):
    name: str
    kind: str
    url: str
    timeout_seconds: float
    max_in_flight: int
    receipts_token: str | None = None
    """Only when made up: the gateway created without one, or its token rotated."""
    host: str | None = None
    """smpp (the password is never shown): host, port, system_id, system_type, binds, window,
    enquire_link_seconds, source_ton_npi, dest_ton_npi, concatenation, message_id_tlv."""
    port: int | None = None
    system_id: str | None = None
    system_type: str | None = None
    binds: int | None = None
    window: int | None = None
    enquire_link_seconds: float | None = None
    source_ton_npi: list[int] | None = None
    dest_ton_npi: list[int] | None = None
    concatenation: str | None = None
    message_id_tlv: int | None = None


class AllocationEntity(Shape):
    destination: str
    tenant_set: str
    weight: float | None
    rate: float | None


class DestinationEntity(WindowsEntity):
    code: str
    gateway: str
    rate: float
    burst: int
    max_drain_seconds: int
    default_validity_seconds: int
    allocations: list[AllocationEntity]


class RouteEntity(Shape):
    prefix: str
    sender_type: str
    destination: str


class RoutesEntity(Shape):
    routes: list[RouteEntity]


class SigningSecretRotation(Body):
    """`POST /v1/admin/tenants/{name}/signing-secret/rotate` (the body is optional)."""

    grace_seconds: Annotated[int, Integer(0, 30 * 86400)] = 86400
    """How long callbacks are signed with the previous secret too (default a day), so receivers can switch."""


class CallbacksEntity(Shape):
    allow_networks: list[str]
    allow_http: bool


class LimitsEntity(Shape):
    scheduled_per_tenant: int


class LevelsEntity(Shape):
    minimum_share: float


class RetentionEntity(Shape):
    finished_messages: str
    """The duration as given, e.g. "30d"."""
    seconds: int
