"""Group commit for submissions: requests that arrive while a submission is being written are written
together by the next call, one round trip and one transaction for many requests (docs/decisions/0008).

A lone request goes at once (nothing waits for company); under load, calls grow to up to `max_items`
submissions. Each item is still judged on its own by fairlane.submit_json_v1, so one request's bad
message never fails another's, and each request gets exactly its own results back."""

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any

import asyncpg

from db import messages
from db.errors import UNAVAILABLE, FairlaneError
from db.messages import Submitted
from db.transaction import with_retries

Pending = tuple[Sequence[dict[str, Any]], "asyncio.Future[list[Submitted]]"]


class Submitter:
    def __init__(
        self, pool: asyncpg.Pool, *, max_items: int = 1000, max_calls: int = 2, max_pending: int = 20_000
    ) -> None:
        self._pool = pool
        self._max_pending = max_pending
        self._max_items = max_items
        self._max_calls = max_calls
        self._pending: deque[Pending] = deque()
        self._pending_items = 0  # submissions in self._pending
        self._calls: set[asyncio.Task[None]] = set()

    async def submit(self, submissions: Sequence[dict[str, Any]]) -> list[Submitted]:
        """Submit messages; returns one result per submission, in order. Raises FairlaneError
        `unavailable` when more than `max_pending` submissions are already waiting (the database is
        behind: clients should back off)."""
        if self._pending_items + len(submissions) > self._max_pending:
            raise FairlaneError("unavailable", "too many submissions are waiting for the database; retry shortly")
        future: asyncio.Future[list[Submitted]] = asyncio.get_running_loop().create_future()
        self._pending.append((submissions, future))
        self._pending_items += len(submissions)
        self._start_calls()
        return await future

    async def close(self) -> None:
        while self._calls:
            await asyncio.gather(*self._calls, return_exceptions=True)

    def _start_calls(self) -> None:
        while self._pending and len(self._calls) < self._max_calls:
            group: list[Pending] = []
            size = 0
            while self._pending and (not group or size + len(self._pending[0][0]) <= self._max_items):
                group.append(self._pending.popleft())
                size += len(group[-1][0])
            self._pending_items -= size
            task = asyncio.create_task(self._call(group))
            self._calls.add(task)
            task.add_done_callback(self._call_done)

    def _call_done(self, task: "asyncio.Task[None]") -> None:
        self._calls.discard(task)
        self._start_calls()

    async def _call(self, group: list[Pending]) -> None:
        everything = [submission for submissions, _ in group for submission in submissions]
        try:
            results = await self._write(everything)
        except Exception as error:
            if len(group) == 1 or isinstance(error, UNAVAILABLE):
                for _, future in group:
                    _fail(future, error)
                return
            # one request's submissions broke the call: each request again on its own, so the error
            # reaches only the request that caused it
            for submissions, future in group:
                try:
                    _answer(future, await self._write(submissions))
                except Exception as own_error:
                    _fail(future, own_error)
            return
        start = 0
        for submissions, future in group:
            _answer(future, results[start : start + len(submissions)])
            start += len(submissions)

    async def _write(self, submissions: Sequence[dict[str, Any]]) -> list[Submitted]:
        return await with_retries(
            self._pool, lambda connection: messages.submit(connection, submissions), one_statement=True
        )


def _answer(future: "asyncio.Future[list[Submitted]]", results: list[Submitted]) -> None:
    if not future.done():  # a request whose client went away is simply not answered
        future.set_result(results)


def _fail(future: "asyncio.Future[list[Submitted]]", error: Exception) -> None:
    if not future.done():
        future.set_exception(error)
