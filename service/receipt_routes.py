"""Delivery receipts from gateways: POST /v1/gateways/{name}/receipts (the http gateway protocol)."""

from aiohttp import web

from db import dispatch
from db.configuration import is_plain_text
from db.errors import FairlaneError
from service import requests
from service.auth import bearer, tokens_match
from service.requests import invalid
from service.state import POOL


async def receipt(request: web.Request) -> web.Response:
    body = await requests.json_object(request)
    requests.only(body, ("id", "provider_id", "status", "error_code"))
    raw_id = requests.text(body, "id", limit=19)
    message_id = requests.identifier(raw_id) if raw_id is not None else None
    if raw_id is not None and message_id is None:
        raise invalid("id", raw_id, "id must be a message id (a string of digits)")
    provider_id = requests.text(body, "provider_id", limit=255)
    status = requests.text(body, "status", limit=255)
    error_code = requests.text(body, "error_code", limit=255)
    name = request.match_info["name"]
    if not is_plain_text(name):
        raise invalid("name", None, "the gateway name must not contain NUL or lone surrogates")
    async with request.app[POOL].acquire() as connection:
        found, token = await dispatch.receipts_token(connection, name)
        if not found:
            raise FairlaneError("not_found", f"unknown gateway {name[:64]!r}")
        if token is not None and not tokens_match(bearer(request), token):
            raise FairlaneError("forbidden", "the receipts token is not valid for this gateway")
        result = await dispatch.receipt(connection, name, provider_id, message_id, status, error_code)
    return web.json_response({"status": result})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/v1/gateways/{name}/receipts", receipt)
