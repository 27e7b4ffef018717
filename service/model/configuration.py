"""The configuration's shapes, declared once: what `fairlane apply CONFIG.toml` reads, what the admin
API's PUT bodies carry (the same shapes less the fields a path names or a file alone holds) and what its
GETs answer. db/configuration.py applies them (as `model_dump()` gives them)."""

import datetime as dt
import math
from decimal import Decimal
from typing import Annotated, Any, Self

from pydantic import Field, model_validator

from service.model.fields import Body, Duration, FieldProblem, Integer, OneOf, PositiveNumber, Shape, Text, parse

SENDER_TYPES = ("long_code", "short_code", "toll_free", "alphanumeric")
GATEWAY_KINDS = ("http", "simulator", "smpp")

Name = Annotated[str, Text(4096, empty=False)]


class TenantSet(Body):
    name: Name
    weight: PositiveNumber = Decimal(1)


class Gateway(Body):
    name: Name
    kind: Annotated[str, OneOf(GATEWAY_KINDS)]
    url: Name
    timeout_seconds: PositiveNumber = Decimal(10)
    max_in_flight: Annotated[int, Integer(1)] = 100
    receipts_token: Name | None = None
    """When set, delivery receipts must carry `Authorization: Bearer <receipts_token>` (16-256 characters)."""


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


class DestinationFields(Body):
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


class Sender(Body):
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


class Configuration(Body):
    retention: Retention | None = None
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
    signing_secret: str
    """The Standard Webhooks secret of the tenant's status callbacks."""
    api_keys: list[ApiKey]
    api_key: str | None = None
    """Only when the tenant is created."""


class SenderEntity(Shape):
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
    receipts_token: str | None


class AllocationEntity(Shape):
    destination: str
    tenant_set: str
    weight: float | None
    rate: float | None


class DestinationEntity(Shape):
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


class RetentionEntity(Shape):
    finished_messages: str
    """The duration as given, e.g. "30d"."""
    seconds: int
