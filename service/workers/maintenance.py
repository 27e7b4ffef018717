"""Maintenance: every second, on whichever process holds the leadership (a session advisory lock on its
own connection; when that process dies, another takes over within a second), a bounded step of each chore:
requeue messages whose lease expired, promote scheduled messages whose time has come, expire messages past
their validity, make the partitions of finished messages ahead and drop those past the retention, prune
idempotency keys and finished callbacks. Runs inside every dispatcher process; claiming runs everywhere,
maintenance on one."""

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable

import asyncpg

from db import maintenance
from service.workers.loop import DATABASE_ERRORS, Outage

logger = logging.getLogger(__name__)


class Maintenance:
    def __init__(self, dsn: str, *, max_attempts: int, interval_seconds: float = 1.0) -> None:
        self.dsn = dsn
        self.max_attempts = max_attempts
        self.interval_seconds = interval_seconds

    async def run(self) -> None:
        connection: asyncpg.Connection | None = None
        leader = False
        outage = Outage("maintenance")
        try:
            while True:
                try:
                    if connection is None or connection.is_closed():
                        connection = await asyncpg.connect(self.dsn)
                        outage.succeeded()
                        leader = False
                    if not leader:
                        leader = await maintenance.try_lead(connection)
                        if leader:
                            logger.info("maintenance leader", extra={"pid": os.getpid()})
                    if leader:
                        await self._tick(connection)
                except DATABASE_ERRORS as error:
                    if connection is not None and not connection.is_closed():
                        logger.warning("maintenance failed", extra={"error": str(error) or type(error).__name__})
                    else:
                        outage.failed(error)  # the database is away: logged once
                    if connection is not None:
                        connection.terminate()
                    connection = None
                await asyncio.sleep(self.interval_seconds)
        finally:
            if connection is not None and not connection.is_closed():
                await connection.close()

    async def _tick(self, connection: asyncpg.Connection) -> None:
        done = {
            "rescued": await maintenance.rescue(connection, self.max_attempts),
            "promoted": await maintenance.promote(connection),
            "expired": await maintenance.expire(connection),
            "pruned": await maintenance.prune(connection),
            # messages sent over SMPP (docs/decisions/0016): receipts that overtook completions, old parts
            "receipts_settled": await maintenance.settle_waiting_parts(connection),
            "parts_pruned": await maintenance.prune_message_parts(connection),
        }
        done["partitions_made"] = await _repeat(maintenance.make_history_partition, connection)
        done["partitions_dropped"] = await _repeat(maintenance.drop_history_partition, connection)
        if any(done.values()):
            logger.info("maintenance", extra=done)


async def _repeat(step: Callable[[asyncpg.Connection], Awaitable[bool]], connection: asyncpg.Connection) -> int:
    """A partition step, up to four times a tick (each call its own short transaction)."""
    done = 0
    while done < 4 and await step(connection):
        done += 1
    return done
