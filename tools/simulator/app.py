"""The carrier simulator: a separate process speaking the `http` gateway protocol
(service/workers/gateways/http.py).

Per destination it enforces its own rate limit (at most rate + burst segments in any one-second window,
429 beyond), draws latencies, failures, throttles and undelivered outcomes from a seeded generator, sends
delivery receipts (delayed, sometimes twice) to a receipts URL, and reports what it received:
`GET /stats` (per destination and second, 429s answered, duplicate idempotency keys) and `GET /received`
(every accepted message with its arrival time: seconds since start, `at`, and wall-clock, `wall`).

Configuration (TOML, all optional; tools/simulator/config.py):

    seed = 1
    latency_ms = [1, 5]            # uniform between the two
    failure_rate = 0.0             # 500 answers
    permanent_failure_rate = 0.0   # 400 with {"code": "30003"}
    throttle_rate = 0.0            # random 429s besides the rate limit
    undelivered_rate = 0.0
    receipts_url = ""              # e.g. http://127.0.0.1:8080/v1/gateways/sim/receipts
    receipts_token = ""            # sent as Authorization: Bearer, when the gateway requires one
    receipt_delay_ms = [50, 200]
    duplicate_receipt_rate = 0.0
    [destinations.US-SC]
    rate = 100
    burst = 20
    [smpp]                         # with --smpp-port: the SMPP side (tools/simulator/smpp.py)
    max_binds = 8
    window = 100
    [smpp.accounts.fairlane]       # none: any system_id binds; its parts count under that destination
    password = "secret"
    destination = "US-SC"
"""

import asyncio
import collections
import json
import random
import socket
import time
import uuid
from typing import Any

import aiohttp
from aiohttp import web

from tools.simulator.config import SimulatorConfig
from tools.simulator.smpp import SmppCarrier


class Window:
    """Segments accepted in the last second (a sliding window)."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.entries: collections.deque[tuple[float, int]] = collections.deque()
        self.total = 0

    def admit(self, now: float, segments: int) -> bool:
        while self.entries and self.entries[0][0] <= now - 1.0:
            self.total -= self.entries.popleft()[1]
        if self.total + segments > self.limit:
            return False
        self.entries.append((now, segments))
        self.total += segments
        return True


class Simulator:
    def __init__(self, config: SimulatorConfig, smpp: "SmppListener | None" = None) -> None:
        self.config = config
        self.smpp_listener = smpp
        self.smpp: SmppCarrier | None = None
        self.random = random.Random(config.seed)
        self.started = time.monotonic()
        self.windows = {code: Window(limits.rate + limits.burst) for code, limits in config.destinations.items()}
        self.per_second: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
        self.throttled: collections.Counter[str] = collections.Counter()
        self.keys: collections.Counter[str] = collections.Counter()
        self.received: list[dict[str, Any]] = []
        self.session: aiohttp.ClientSession | None = None
        self.receipt_tasks: set[asyncio.Task[None]] = set()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/messages", self.messages)
        app.router.add_get("/stats", self.stats)
        app.router.add_get("/received", self.received_messages)
        app.cleanup_ctx.append(self._client)
        if self.smpp_listener is not None:
            app.cleanup_ctx.append(self._smpp)
        return app

    async def _smpp(self, app: web.Application):  # type: ignore[no-untyped-def]
        assert self.smpp_listener is not None
        self.smpp = SmppCarrier(self, self.config)
        address = await self.smpp.start(*self.smpp_listener)
        print(f"simulator smpp listening on {address}", flush=True)
        yield
        await self.smpp.stop()

    async def _client(self, app: web.Application):  # type: ignore[no-untyped-def]
        self.session = aiohttp.ClientSession()
        yield
        for task in list(self.receipt_tasks):
            task.cancel()
        await asyncio.gather(*self.receipt_tasks, return_exceptions=True)
        await self.session.close()

    async def messages(self, request: web.Request) -> web.Response:
        try:
            message = await request.json()
            destination = str(message["destination"])
            segments = int(message["segments"])
            if not 1 <= segments <= 100:
                raise ValueError(segments)
        except (ValueError, KeyError, TypeError, OverflowError, UnicodeDecodeError):
            return web.json_response({"code": "invalid", "message": "bad message"}, status=400)
        key = request.headers.get("Idempotency-Key", "")
        low, high = self.config.latency_ms
        await asyncio.sleep(self.random.uniform(low, high) / 1000.0)
        draw = self.random.random()
        if draw < self.config.throttle_rate:
            self.throttled[destination] += 1
            return web.json_response({"code": "throttled"}, status=429, headers={"Retry-After": "1"})
        draw -= self.config.throttle_rate
        if draw < self.config.failure_rate:
            return web.json_response({"code": "carrier_error", "message": "try again"}, status=500)
        draw -= self.config.failure_rate
        if draw < self.config.permanent_failure_rate:
            return web.json_response({"code": "30003", "message": "unreachable handset"}, status=400)
        # the rate limit counts only what the carrier takes
        now = time.monotonic() - self.started
        window = self.windows.get(destination)
        if window is not None and not window.admit(now, segments):
            self.throttled[destination] += 1
            return web.json_response({"code": "throttled"}, status=429, headers={"Retry-After": "1"})
        self.keys[key] += 1
        self.per_second[destination][int(now)] += segments
        self.received.append({**message, "at": now, "wall": time.time(), "idempotency_key": key})
        provider_id = uuid.uuid4().hex
        if self.config.receipts_url:
            task = asyncio.create_task(self._receipts(provider_id))
            self.receipt_tasks.add(task)
            task.add_done_callback(self.receipt_tasks.discard)
        return web.json_response({"provider_id": provider_id})

    async def _receipts(self, provider_id: str) -> None:
        assert self.session is not None
        status = "undelivered" if self.random.random() < self.config.undelivered_rate else "delivered"
        copies = 2 if self.random.random() < self.config.duplicate_receipt_rate else 1
        body = {"provider_id": provider_id, "status": status}
        if status == "undelivered":
            body["error_code"] = "30005"
        token = self.config.receipts_token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        low, high = self.config.receipt_delay_ms
        for _ in range(copies):
            await asyncio.sleep(self.random.uniform(low, high) / 1000.0)
            # like a carrier, retry a receipt the receiver did not take (up to about 10 s)
            for attempt in range(8):
                try:
                    async with self.session.post(self.config.receipts_url, json=body, headers=headers) as response:
                        await response.read()
                        if response.status < 300:
                            break
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.05 * 2**attempt)

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "per_second": {d: {str(s): n for s, n in sorted(c.items())} for d, c in self.per_second.items()},
                "throttled": dict(self.throttled),
                "received": len(self.received),
                "duplicate_keys": sum(1 for n in self.keys.values() if n > 1),
                **({"smpp": self.smpp.stats()} if self.smpp is not None else {}),
            }
        )

    async def received_messages(self, request: web.Request) -> web.Response:
        return web.Response(text=json.dumps(self.received), content_type="application/json")


SmppListener = tuple[str, int, socket.socket | None]
"""Where the SMPP side listens: host, port, or a listening socket (`fairlane run` holds it)."""


def run(
    port: int,
    config: SimulatorConfig,
    host: str = "127.0.0.1",
    sock: socket.socket | None = None,
    smpp: SmppListener | None = None,
) -> int:
    """Serve (on `sock` when given: a listening socket `fairlane run` holds for it) until SIGINT/SIGTERM,
    then stop gracefully and return 0; prints one line once it is listening (and one for the SMPP side,
    first, when it has one)."""
    from service.cli.main import serve_app

    return serve_app(Simulator(config, smpp).app(), "simulator", host=host, port=port, sock=sock)
