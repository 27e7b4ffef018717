"""The shapes of messages, declared once: what a tenant sends (one message or a batch), how a message,
its events and its queues are shown, and the error body. A message is read from the database as
fairlane.message_details shows it (column names as in SQL: recipient, sender) and shown as the API names
it (to, from; ids as strings)."""

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, field_validator

from service.model.fields import Body, Integer, OneOf, Shape, Text, UtcTimestamp

# a message's statuses (SPEC §4), as the database's messages_status_check allows them
STATUSES = ("scheduled", "queued", "sending", "sent", "delivered", "undelivered", "failed", "expired", "canceled")
Status = Literal["scheduled", "queued", "sending", "sent", "delivered", "undelivered", "failed", "expired", "canceled"]
MAX_BATCH = 1000


class MessageRequest(Body):
    """`POST /v1/messages`."""

    to: Annotated[str, Text(64)]
    """E.164 recipient, e.g. +15551234567."""
    body: Annotated[str, Text(10_000)]
    """1 to 1,600 characters."""
    from_: Annotated[str, Text(64)] | None = Field(None, alias="from")
    """A sender registered for the tenant; default: by route."""
    destination: Annotated[str, Text(64)] | None = None
    """A destination code; default: by route."""
    send_at: UtcTimestamp | None = None
    """Schedule, at most 35 days ahead."""
    validity_seconds: Annotated[int, Integer()] | None = None
    """1 to 36,000; default: the destination's."""
    status_callback: Annotated[str, Text(4096)] | None = None
    priority: Annotated[str, OneOf(("high", "normal", "bulk"))] | None = None
    """Level of service: high, normal (default) or bulk; inside the tenant's share, higher levels go first and
    lower ones keep a minimum share (docs/decisions/0020)."""

    def submission(self, tenant: str, idempotency_key: str | None) -> dict[str, Any]:
        """The fields of the database's fairlane.submission_v2."""
        return {
            "tenant": tenant,
            "recipient": self.to,
            "body": self.body,
            "sender": self.from_,
            "destination": self.destination,
            "send_at": self.send_at,
            "validity_seconds": self.validity_seconds,
            "status_callback": self.status_callback,
            "idempotency_key": idempotency_key,
            "priority": self.priority,
        }


# the database names submission fields as in fairlane.outbox; the API as in its JSON body
API_FIELDS = {"recipient": "to", "sender": "from"}


class BatchItem(MessageRequest):
    """One message of `POST /v1/messages/batch`."""

    idempotency_key: Annotated[str, Text(255)] | None = None


class Batch(Body):
    """`POST /v1/messages/batch`: each item is read on its own (one bad item fails only itself)."""

    # documented as BatchItems (the OpenAPI document carries BatchItem beside it)
    messages: list[Any] = Field(
        min_length=1, max_length=MAX_BATCH, json_schema_extra={"items": {"$ref": "#/components/schemas/BatchItem"}}
    )

    @field_validator("messages", mode="before")
    @classmethod
    def _array(cls, value: object) -> object:
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_BATCH:
            raise ValueError(f"must be an array of 1 to {MAX_BATCH} message objects")
        return value


class Message(Shape):
    id: str
    status: Status
    to: str = Field(validation_alias=AliasChoices("recipient", "to"))
    from_: str = Field(validation_alias=AliasChoices("sender", "from"), serialization_alias="from")
    destination: str
    body: str
    segments: int
    encoding: Literal["GSM-7", "UCS-2"]
    attempts: int
    provider_id: str | None
    error_code: str | None
    error_message: str | None
    status_callback: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    send_at: dt.datetime | None
    expires_at: dt.datetime
    priority: Literal["high", "normal", "bulk"] = "normal"
    """Its level of service."""
    idempotency_key: str | None = None
    """The request's Idempotency-Key, or the one the server made up for a request without one: a request
    sent again with it returns this message (within 24 h), and `GET /v1/messages?idempotency_key=` finds it."""

    @field_validator("id", mode="before")
    @classmethod
    def _id_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) else value


class MessagePage(Shape):
    messages: list[Message]
    next_page_token: str | None


class ErrorBody(Shape):
    code: str
    message: str
    retryable: bool
    details: dict[str, Any]


class ErrorResponse(Shape):
    error: ErrorBody


class Accepted(Shape):
    index: int
    status: Literal[202]
    replayed: bool
    message: Message


class Refused(Shape):
    index: int
    status: int
    error: ErrorBody


class BatchResults(Shape):
    accepted: int
    rejected: int
    results: list[Accepted | Refused]


class Event(Shape):
    id: str
    status: Status
    at: dt.datetime
    detail: dict[str, Any] | None

    @field_validator("id", mode="before")
    @classmethod
    def _id_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) else value


class Events(Shape):
    message_id: str
    events: list[Event]


class Queue(Shape):
    queue_id: int
    destination: str
    sender: str
    depth: int
    queued_segments: int
    oldest_age_seconds: float | None
    portion: float | None
    projected_drain_seconds: float | None
    admission: Literal["open", "closed"]


class Queues(Shape):
    queues: list[Queue]


class Receipt(Body):
    """A delivery receipt a gateway posts (`POST /v1/gateways/{name}/receipts`), naming the message by the
    provider's id or by fairlane's."""

    id: Annotated[str, Text(19)] | None = None
    """fairlane's message id."""
    provider_id: Annotated[str, Text(255)] | None = None
    status: Annotated[str, OneOf(("delivered", "undelivered"))]
    error_code: Annotated[str, Text(255)] | None = None


class ReceiptAnswer(Shape):
    status: Status
    """The message's status after the receipt."""


class UsageRow(Shape):
    day: dt.date
    """The UTC day the messages finished."""
    destination: str
    sender: str
    status: Literal["sent", "delivered", "undelivered", "failed", "expired", "canceled"]
    messages: int
    segments: int


class Usage(Shape):
    """`GET /v1/usage`: what the tenant's messages used, day by day; kept after the messages are pruned."""

    from_: dt.date = Field(serialization_alias="from")
    to: dt.date
    usage: list[UsageRow]
