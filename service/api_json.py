"""How the API shows things in JSON: messages, events and errors (ids as strings)."""

import datetime as dt
import json
from decimal import Decimal
from typing import Any

from db.errors import FairlaneError
from db.messages import Event

# a message's statuses (SPEC §4), as the database's messages_status_check allows them
STATUSES = ("scheduled", "queued", "sending", "sent", "delivered", "undelivered", "failed", "expired", "canceled")

HTTP_STATUS = {
    "invalid_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "unknown_destination": 404,
    "method_not_allowed": 405,
    "not_cancelable": 409,
    "conflict": 409,
    "receipt_too_early": 409,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "idempotency_mismatch": 422,
    "queue_overflow": 429,
    "rate_limited": 429,
    "internal": 500,
    "unavailable": 503,
}


def _plain(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any) -> str:
    """JSON text of a response body (numbers from NUMERIC columns as numbers, times as ISO-8601)."""
    return json.dumps(value, default=_plain, ensure_ascii=False, allow_nan=False)


def message_json(message: dict[str, Any]) -> dict[str, Any]:
    """A row of fairlane.message_details as the API shows it."""
    return {
        "id": str(message["id"]),
        "status": message["status"],
        "to": message["recipient"],
        "from": message["sender"],
        "destination": message["destination"],
        "body": message["body"],
        "segments": message["segments"],
        "encoding": message["encoding"],
        "attempts": message["attempts"],
        "provider_id": message["provider_id"],
        "error_code": message["error_code"],
        "error_message": message["error_message"],
        "status_callback": message["status_callback"],
        "created_at": message["created_at"],
        "updated_at": message["updated_at"],
        "send_at": message["send_at"],
        "expires_at": message["expires_at"],
    }


def event_json(event: Event) -> dict[str, Any]:
    return {"id": str(event.id), "status": event.status, "at": event.at.isoformat(), "detail": event.detail}


def error_json(error: FairlaneError) -> dict[str, Any]:
    details: dict[str, Any] = {**error.details}
    if error.field is not None:
        details["field"] = error.field
    if error.value is not None:
        details["value"] = error.value
    return {"code": error.code, "message": error.message, "retryable": error.retryable, "details": details}
