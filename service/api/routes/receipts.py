"""Delivery receipts from gateways: POST /v1/gateways/{name}/receipts (the http gateway protocol)."""

from aiohttp import web

from db import receipts
from db.errors import FairlaneError
from service.api import bodies
from service.api.auth import bearer, tokens_match
from service.api.routing import Route
from service.api.state import POOL
from service.model.messages import Receipt, ReceiptAnswer


async def receipt(request: web.Request) -> web.Response:
    given = await bodies.read(request, Receipt)
    message_id = bodies.identifier(given.id) if given.id is not None else None
    if given.id is not None and message_id is None:
        raise bodies.invalid("id", given.id, "id must be a message id (a string of digits)")
    name = bodies.path_text(request, "name")
    async with request.app[POOL].acquire() as connection:
        found, token = await receipts.receipts_token(connection, name)
        if not found:
            raise FairlaneError("not_found", f"unknown gateway {name[:64]!r}")
        if token is not None and not tokens_match(bearer(request), token):
            raise FairlaneError("forbidden", "the receipts token is not valid for this gateway")
        status = await receipts.receipt(connection, name, given.provider_id, message_id, given.status, given.error_code)
    return bodies.respond(ReceiptAnswer.model_validate({"status": status}))


ROUTES = [
    Route(
        "POST",
        "/v1/gateways/{name}/receipts",
        receipt,
        "A delivery receipt from a gateway (with its receipts token, when it has one)",
        "receipts",
        {200: ReceiptAnswer},
        (400, 401, 403, 404, 409, 413, 415),
        body=Receipt,
    )
]
