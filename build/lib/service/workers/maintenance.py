"""Maintenance: every second, on whichever process holds the leadership (a session advisory lock on its
own connection; when that process dies, another takes over within a second), requeue messages whose lease
expired, promote scheduled messages whose time has come and, every minute, prune idempotency keys and
finished callbacks. Runs inside every dispatcher process; claiming runs everywhere, maintenance on one."""

import asyncio
import logging
import os

import asyncpg

from db import maintenance
from service.workers.loop import DATABASE_ERRORS

logger = logging.getLogger(__name__)


class Maintenance:
    def __init__(self, dsn: str, *, max_attempts: int, interval_seconds: float = 1.0) -> None:
        self.dsn = dsn
        self.max_attempts = max_attempts
        self.interval_seconds = interval_seconds

    async def run(self) -> None:
        connection: asyncpg.Connection | None = None
        leader = False
        ticks = 0
        try:
            while True:
                try:
                    if connection is None or connection.is_closed():
                        connection = await asyncpg.connect(self.dsn)
                        leader = False
                    if not leader:
                        leader = await maintenance.try_lead(connection)
                        if leader:
                            logger.info("maintenance leader", extra={"pid": os.getpid()})
                    if leader:
                        await self._tick(connection, ticks)
                except DATABASE_ERRORS as error:
                    logger.warning("maintenance failed", extra={"error": str(error)})
                    if connection is not None:
                        connection.terminate()
                    connection = None
                ticks += 1
                await asyncio.sleep(self.interval_seconds)
        finally:
            if connection is not None and not connection.is_closed():
                await connection.close()

    async def _tick(self, connection: asyncpg.Connection, ticks: int) -> None:
        rescued = await maintenance.rescue(connection, self.max_attempts)
        promoted = await maintenance.promote(connection)
        if rescued or promoted:
            logger.info("maintenance", extra={"rescued": rescued, "promoted": promoted})
        if ticks % 60 == 0:
            await maintenance.prune(connection)
