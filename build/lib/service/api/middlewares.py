"""The API's middlewares: every failure becomes a JSON error body with a precise code and the HTTP status
of service/model/errors.py, never a stack trace; and request latency by route."""

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from db.errors import UNAVAILABLE, FairlaneError, translate
from service.api.bodies import from_invalid
from service.api.state import METRICS
from service.model.errors import is_retryable, status_of
from service.model.fields import Invalid
from service.model.messages import ErrorBody, ErrorResponse

logger = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# the codes of the statuses aiohttp answers by itself
AIOHTTP_CODES = {
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def error_body(error: FairlaneError) -> ErrorBody:
    details = {**error.details}
    if error.field is not None:
        details["field"] = error.field
    if error.value is not None:
        details["value"] = error.value
    return ErrorBody(code=error.code, message=error.message, retryable=is_retryable(error.code), details=details)


def error_response(error: FairlaneError) -> web.Response:
    body = error_body(error)
    response = web.Response(
        status=status_of(error.code),
        text=ErrorResponse(error=body).model_dump_json(),
        content_type="application/json",
    )
    if response.status in (429, 503):
        response.headers["Retry-After"] = str(max(1, int(body.details.get("retry_after_seconds") or 1)))
    return response


def _from_http(error: web.HTTPException) -> FairlaneError:
    code = AIOHTTP_CODES.get(error.status, "invalid_request")
    return FairlaneError(code, error.reason if error.status != 413 else "the body is too large")


@web.middleware
async def measured(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request latency by route; outermost, so it sees the status the error middleware chose."""
    started = time.perf_counter()
    response = await handler(request)
    route = request.match_info.route.resource
    request.app[METRICS].requests.labels(
        method=request.method, route=route.canonical if route else "unmatched", status=str(response.status)
    ).observe(time.perf_counter() - started)
    return response


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        with translate():  # errors of the database's rules that a handler let through
            return await handler(request)
    except FairlaneError as error:
        return error_response(error)
    except Invalid as error:
        return error_response(from_invalid(error))
    except web.HTTPException as error:
        if error.status < 400:
            raise
        response = error_response(_from_http(error))
        if "Allow" in error.headers:
            response.headers["Allow"] = error.headers["Allow"]
        return response
    except UNAVAILABLE as error:
        logger.warning("database unavailable", extra={"path": request.path, "error": type(error).__name__})
        return error_response(FairlaneError("unavailable", "the database is unavailable; retry"))
    except Exception:
        logger.exception("request failed", extra={"path": request.path})
        return error_response(FairlaneError("internal", "internal error"))
