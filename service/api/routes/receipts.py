"""Delivery receipts from gateways: POST /v1/gateways/{name}/receipts (the http gateway protocol).

Every gateway has a receipts token (docs/decisions/0017), and a receipt is checked against it before its body
is read: without a token 401, for an unknown gateway 404, with a wrong one 403, each answered at once with the
connection closed, so nobody without the token can make the API read (let alone parse) a large body. The
receipt then names the message by the provider's id or by ours, among the messages of that gateway only
(fairlane.receipt_v1)."""

from aiohttp import web

from db import receipts
from db.errors import FairlaneError
from service.api import bodies
from service.api.auth import GATEWAY_TOKENS, bearer, tokens_match
from service.api.middlewares import error_response
from service.api.routing import Route
from service.api.state import POOL
from service.model.messages import Receipt, ReceiptAnswer

MAX_RECEIPT_BYTES = 64 << 10


async def _authorize(request: web.Request, name: str) -> None:
    """401, 403 or 404 before anything of the body is read."""
    given = bearer(request)
    expected = await request.app[GATEWAY_TOKENS].token(request, name)
    if expected is None:
        raise FairlaneError("not_found", f"unknown gateway {name[:64]!r}")
    if not tokens_match(given, expected):
        raise FairlaneError("forbidden", "the receipts token is not valid for this gateway")


async def receipt(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    try:
        bodies.path_text(request, "name")
        await _authorize(request, name)
        raw = await bodies.json_object(request, limit=MAX_RECEIPT_BYTES)
    except FairlaneError as error:
        # answered, then the connection closed at once: the unread body is never read (not even to discard
        # it, as aiohttp would to keep the connection)
        refused = error_response(error)
        refused.force_close()
        await refused.prepare(request)
        await refused.write_eof()
        request.protocol.force_close()
        return refused
    given = bodies.shape(Receipt, raw)
    message_id = bodies.identifier(given.id) if given.id is not None else None
    if given.id is not None and message_id is None:
        raise bodies.invalid("id", given.id, "id must be a message id (a string of digits)")
    async with request.app[POOL].acquire() as connection:
        status = await receipts.receipt(connection, name, given.provider_id, message_id, given.status, given.error_code)
    return bodies.respond(ReceiptAnswer.model_validate({"status": status}))


ROUTES = [
    Route(
        "POST",
        "/v1/gateways/{name}/receipts",
        receipt,
        "A delivery receipt from a gateway, with its receipts token (checked before the body is read)",
        "receipts",
        {200: ReceiptAnswer},
        (400, 401, 403, 404, 409, 413, 415, 429),
        body=Receipt,
    )
]
