"""Delivery receipts from gateways (asyncpg): the gateway's receipts token, and applying a receipt."""

import asyncpg

from db import queries
from db.errors import translate

_Q = queries.load("receipts")


async def receipts_token(connection: asyncpg.Connection, gateway: str) -> tuple[bool, str | None]:
    """Whether the gateway exists, and the token its receipts must carry (None: no token)."""
    row = await connection.fetchrow(_Q["receipts_token"], gateway)
    return (True, row["receipts_token"]) if row else (False, None)


async def receipt(
    connection: asyncpg.Connection,
    gateway: str,
    provider_id: str | None,
    message_id: int | None,
    status: str | None,
    error_code: str | None,
) -> str:
    """A sent message becomes delivered or undelivered; returns the message's status."""
    with translate():
        return str(await connection.fetchval(_Q["receipt"], gateway, provider_id, message_id, status, error_code))
