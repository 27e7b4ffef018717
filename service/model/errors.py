"""Every error code fairlane answers with, in one table: its HTTP status, whether the same request may
succeed later (`retryable`), and what it means. The database raises the same codes (`fairlane.raise_v1`
maps each to SQLSTATE FL<status>; tests/unit/test_errors.py holds the two together), the API answers
`{"error": {"code", "message", "retryable", "details"}}` with the status below, and /openapi.json lists
the codes of each status from this table."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorCode:
    status: int
    retryable: bool
    meaning: str


ERRORS: dict[str, ErrorCode] = {
    "invalid_request": ErrorCode(400, False, "a field is missing, of the wrong type or out of range"),
    "unauthorized": ErrorCode(401, False, "no valid API key or token"),
    "forbidden": ErrorCode(403, False, "the credentials do not allow this"),
    "not_found": ErrorCode(404, False, "no such entity (or not the caller's)"),
    "unknown_destination": ErrorCode(404, False, "no such destination, or no route for the recipient"),
    "method_not_allowed": ErrorCode(405, False, "the path does not take this method"),
    "not_cancelable": ErrorCode(409, False, "the message is past queued or scheduled"),
    "conflict": ErrorCode(409, False, "other entities still refer to this one"),
    "receipt_too_early": ErrorCode(409, True, "the message is not recorded as sent yet; send the receipt again"),
    "payload_too_large": ErrorCode(413, False, "the body is too large"),
    "unsupported_media_type": ErrorCode(415, False, "the body is not declared application/json"),
    "idempotency_mismatch": ErrorCode(422, False, "the idempotency key was used with a different request"),
    "queue_overflow": ErrorCode(429, True, "the queue's projected drain time is over its limit"),
    "scheduled_overflow": ErrorCode(429, True, "the tenant holds as many scheduled messages as it may"),
    "rate_limited": ErrorCode(429, True, "too many requests; slow down"),
    "internal": ErrorCode(500, True, "an unexpected failure"),
    "unavailable": ErrorCode(503, True, "the database is unavailable or busy; retry"),
    "outcome_unknown": ErrorCode(
        503, True, "the connection broke after the submission reached the database: retry with the same idempotency key"
    ),
}


def status_of(code: str) -> int:
    return ERRORS[code].status if code in ERRORS else 400


def is_retryable(code: str) -> bool:
    return code in ERRORS and ERRORS[code].retryable


def codes_of(status: int) -> list[str]:
    """The codes answered with an HTTP status, in table order."""
    return [code for code, error in ERRORS.items() if error.status == status]
