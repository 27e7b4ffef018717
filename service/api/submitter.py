"""Group commit for submissions: requests that arrive while a submission is being written are written
together by the next call, one round trip and one transaction for many requests (docs/decisions/0008).

A lone request goes at once (nothing waits for company); under load, calls grow to up to `max_items`
submissions. Each item is still judged on its own by fairlane.submit_json_v1, so one request's bad
message never fails another's, and each request gets exactly its own results back.

Tenants share it fairly (docs/decisions/0017): each tenant's requests wait in a queue of their own, a group
is formed round-robin over the tenants with waiting requests, those served longest ago first (one request
of each in turn); when every call is taken, one more call may start for tenants that have none in flight, so
a tenant's bulk batches never make another tenant's request wait for them. A tenant with
`max_pending_per_tenant` submissions waiting is answered 429 `rate_limited` (its own backlog, nobody else's;
`check_room` says so before a request's body is even read). All tenants together may have `max_pending`
waiting, of which the last `headroom` are kept for tenants with little waiting (at most `light` submissions,
their request included): a few bulk tenants at their own limits fill the rest and are answered 503, while a
tenant's single POST is still taken.

When the connection breaks while a call runs, the call may or may not have committed: every request of its
group fails with `outcome_unknown` (503), never a plain `unavailable`, and the routes name each request's
idempotency keys (every submission carries one: the client's, or one the API made up) so that the client can
send it again without a second message (docs/decisions/0019). A call that could not even start (no
connection) fails with `unavailable`: nothing was written."""

import asyncio
import itertools
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from db import messages
from db.errors import UNAVAILABLE, FairlaneError
from db.messages import Submitted
from db.transaction import with_retries
from service.model.bounded import BoundedDict


class TenantSlots:
    """At most `per_tenant` of a tenant's batches handled at once in this process (read, checked, written,
    answered): the others wait without costing the event loop anything, so one tenant's many large batches
    cannot fill the loop's turns ahead of another tenant's single request. Past `max_waiting` of them waiting,
    a further batch is answered 429 `rate_limited` at once."""

    def __init__(self, per_tenant: int = 2, max_waiting: int = 8) -> None:
        self.per_tenant = per_tenant
        self.max_waiting = max_waiting
        self._slots: BoundedDict[str, asyncio.Semaphore] = BoundedDict(10_000)
        self._waiting: dict[str, int] = {}

    @asynccontextmanager
    async def hold(self, tenant: str) -> AsyncIterator[None]:
        slot = self._slots.get(tenant)
        if slot is None:
            slot = self._slots[tenant] = asyncio.Semaphore(self.per_tenant)
        waiting = self._waiting.get(tenant, 0)
        if slot.locked() and waiting >= self.max_waiting:
            raise FairlaneError(
                "rate_limited",
                f"{self.per_tenant + waiting} of this tenant's batches are being handled or waiting; retry shortly",
                details={"retry_after_seconds": 1},
            )
        self._waiting[tenant] = waiting + 1
        try:
            await slot.acquire()
        finally:
            self._waiting[tenant] -= 1
            if not self._waiting[tenant]:
                del self._waiting[tenant]
        try:
            yield
        finally:
            slot.release()


Pending = tuple[Sequence[dict[str, Any]], "asyncio.Future[list[Submitted]]"]


class Submitter:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        max_items: int = 1000,
        max_calls: int = 2,
        max_pending: int = 20_000,
        max_pending_per_tenant: int = 4_000,
        headroom: int | None = None,
        max_tenants: int = 10_000,
    ) -> None:
        self._pool = pool
        self._max_pending = max_pending
        self._max_pending_per_tenant = max_pending_per_tenant
        # kept for tenants with little waiting: a tenth of the whole, shared by tenants with at most a
        # twentieth of that waiting (2,000 and 100 by default)
        self._headroom = max_pending // 10 if headroom is None else headroom
        self._light = max(1, self._headroom // 20)
        self._max_items = max_items
        self._max_calls = max_calls
        self._waiting: dict[str, deque[Pending]] = {}  # by tenant: its requests in arrival order
        self._waiting_items: dict[str, int] = {}  # by tenant: submissions in its requests
        # by tenant: the group that last served it (a tenant forgotten starts afresh: first in turn)
        self._served: BoundedDict[str, int] = BoundedDict(max_tenants)
        self._groups = itertools.count(1)
        self._pending_items = 0  # submissions waiting, all tenants
        self._calls: set[asyncio.Task[None]] = set()
        self._in_calls: dict[str, int] = {}  # by tenant: calls in flight that carry its submissions

    def waiting(self, tenant: str) -> int:
        """The tenant's submissions waiting for a call (a test hook)."""
        return self._waiting_items.get(tenant, 0)

    def check_room(self, tenant: str) -> None:
        """429 `rate_limited` when the tenant has as many submissions waiting as it may: a request can be refused
        before its body is read and parsed."""
        own = self._waiting_items.get(tenant, 0)
        if own >= self._max_pending_per_tenant:
            raise FairlaneError(
                "rate_limited",
                f"{own} of this tenant's submissions are waiting to be written; retry shortly",
                details={"retry_after_seconds": 1},
            )

    async def submit(self, tenant: str, submissions: Sequence[dict[str, Any]]) -> list[Submitted]:
        """Submit a tenant's messages; returns one result per submission, in order. Raises FairlaneError
        `rate_limited` when the tenant already has more than `max_pending_per_tenant` submissions waiting, and
        `unavailable` when all tenants together have more than `max_pending`, or `max_pending - headroom` for a
        tenant that would have more than a little waiting (the database is behind: clients should back off)."""
        own = self._waiting_items.get(tenant, 0)
        if own and own + len(submissions) > self._max_pending_per_tenant:
            raise FairlaneError(
                "rate_limited",
                f"{own} of this tenant's submissions are waiting to be written; retry shortly",
                details={"retry_after_seconds": 1},
            )
        light = own + len(submissions) <= self._light
        if self._pending_items + len(submissions) > self._max_pending - (0 if light else self._headroom):
            raise FairlaneError("unavailable", "too many submissions are waiting for the database; retry shortly")
        future: asyncio.Future[list[Submitted]] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(tenant, deque()).append((submissions, future))
        self._waiting_items[tenant] = own + len(submissions)
        self._pending_items += len(submissions)
        self._start_calls()
        return await future

    async def close(self) -> None:
        while self._calls:
            await asyncio.gather(*self._calls, return_exceptions=True)

    def _start_calls(self) -> None:
        while self._waiting:
            if len(self._calls) < self._max_calls:
                tenants = list(self._waiting)
            elif len(self._calls) < self._max_calls + 1:  # the extra call: for tenants with nothing in flight
                tenants = [tenant for tenant in self._waiting if not self._in_calls.get(tenant)]
                if not tenants:
                    return
            else:
                return
            group, served = self._form_group(tenants)
            for tenant in served:
                self._in_calls[tenant] = self._in_calls.get(tenant, 0) + 1
            task = asyncio.create_task(self._call(group))
            self._calls.add(task)
            task.add_done_callback(lambda done, served=served: self._call_done(done, served))

    def _form_group(self, tenants: list[str]) -> tuple[list[Pending], list[str]]:
        """Up to `max_items` submissions of `tenants`, one request of each waiting tenant in turn, the tenants
        served longest ago first; a request that does not fit waits for the next group (a group has at least
        one). Returns the group and the tenants it serves."""
        number = next(self._groups)
        turn = sorted(tenants, key=lambda tenant: self._served.get(tenant, 0))
        served: list[str] = []
        group: list[Pending] = []
        size = 0
        while turn and size < self._max_items:
            for tenant in list(turn):
                queue = self._waiting[tenant]
                items = len(queue[0][0])
                if group and size + items > self._max_items:
                    turn.remove(tenant)
                    continue
                group.append(queue.popleft())
                size += items
                if self._served.get(tenant) != number:
                    served.append(tenant)
                self._served[tenant] = number
                self._waiting_items[tenant] -= items
                if not queue:
                    del self._waiting[tenant], self._waiting_items[tenant]
                    turn.remove(tenant)
                if size >= self._max_items:
                    break
        self._pending_items -= size
        return group, served

    def _call_done(self, task: "asyncio.Task[None]", served: list[str]) -> None:
        self._calls.discard(task)
        for tenant in served:
            self._in_calls[tenant] -= 1
            if not self._in_calls[tenant]:
                del self._in_calls[tenant]
        self._start_calls()

    async def _call(self, group: list[Pending]) -> None:
        everything = [submission for submissions, _ in group for submission in submissions]
        try:
            results = await self._write(everything)
        except Exception as error:
            # the database away, or the connection lost while the call ran (`outcome_unknown`: it may have
            # committed): every request of the group gets the error, and each names its own keys to retry with
            if len(group) == 1 or isinstance(error, UNAVAILABLE) or _outcome_unknown(error):
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


def _outcome_unknown(error: Exception) -> bool:
    return isinstance(error, FairlaneError) and error.code == "outcome_unknown"


def _answer(future: "asyncio.Future[list[Submitted]]", results: list[Submitted]) -> None:
    if not future.done():  # a request whose client went away is simply not answered
        future.set_result(results)


def _fail(future: "asyncio.Future[list[Submitted]]", error: Exception) -> None:
    if not future.done():
        future.set_exception(error)
