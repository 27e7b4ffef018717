"""Fault injection for tests (issue 12, docs/decisions/0019): a TCP proxy that cuts connections at a chosen
moment, and an embedded PostgreSQL of a test's own that it can crash and start again.

`Proxy` runs on loopback in a thread of its own (an asyncio loop), so sync tests and real processes use it
alike. Between a process and PostgreSQL it reads the protocol's messages (both ways) and can cut a
connection right after the server's answer to a COMMIT has reached it, before that answer is passed on (the
transaction committed, the client never learns it), or right before the client's COMMIT is passed on (the
server rolls back). Transactions are recognised by the statement they ran (a piece of its SQL text, such as
`complete_v1`), whether explicit (BEGIN ... COMMIT) or a single statement in the extended protocol (committed
at its Sync). Between a dispatcher and a gateway it passes bytes and can cut a connection when the gateway's
answer arrives: the gateway took the request, the dispatcher never hears back.

`OwnServer` is a PostgreSQL in a test's own data directory and socket: a test that crashes PostgreSQL
(`pg_ctl stop -m immediate`) crashes this one, never the session's server the rest of the suite uses.

And what the fault tests observe with: `Receiver`, a status callback receiver keeping what it was told, and
`post_message`, a client's single POST that reports a lost connection as an unknown outcome."""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg

from db import embedded

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104


@dataclass(eq=False)  # kept in a set: one per connection, by identity
class Link:
    """One proxied connection and what the proxy knows of it (PostgreSQL: its statements and transaction)."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    statements: dict[str, str] = field(default_factory=dict)
    """Prepared statement name -> its SQL text (the Bind messages name them)."""
    ran: list[tuple[str, bytes]] = field(default_factory=list)
    """The statements executed in the current transaction: (SQL text, its Bind message's parameters, b"" for a
    simple query)."""
    failed: bool = False
    """An error ended the current transaction: it will roll back."""
    status: str = "I"
    """The server's last transaction status: I (idle), T (in a transaction block), E (failed block)."""
    answer_pending: bool = False
    """PostgreSQL: the client asked for SSL or GSS encryption and the server's one-byte answer comes next."""
    cut: bool = False

    def ran_text(self, text: str, value: bytes = b"") -> bool:
        """Whether the transaction ran a statement containing `text`, bound with parameters holding `value`."""
        return any(text in sql and value in parameters for sql, parameters in self.ran)


@dataclass
class Cut:
    """A rule that cuts the connection on which `when` holds for a message, before the message is passed on."""

    when: Callable[[Link, str, bytes, bytes], bool]
    """(link, direction "client" or "server", message type (b"" for raw bytes), payload) -> cut now?"""
    times: int = 1
    done: int = 0
    fired: threading.Event = field(default_factory=threading.Event)
    """Set once it has cut `times` connections."""


class Proxy:
    """A TCP proxy on 127.0.0.1 to `upstream` (a (host, port) or a Unix socket path); `postgres` reads the
    PostgreSQL protocol, else bytes pass as they come. Use as a context manager; `port` is where it listens."""

    def __init__(self, upstream: tuple[str, int] | str, *, postgres: bool) -> None:
        self.upstream = upstream
        self.postgres = postgres
        self.port = 0
        self.links: set[Link] = set()
        self.cuts: list[Cut] = []
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="fault-proxy")
        self._server: asyncio.AbstractServer | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    def __enter__(self) -> Proxy:
        self._thread.start()
        self._server = self._run(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._run(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def dsn(self, dbname: str, user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}?sslmode=disable"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- rules ---------------------------------------------------------------------------------------

    def cut_after_commit(self, text: str, times: int = 1, value: bytes = b"") -> Cut:
        """Cut a connection whose transaction ran a statement containing `text` (bound with parameters holding
        the bytes `value`, e.g. b"sent" among complete_v1's outcomes) once the server says it committed (its
        ReadyForQuery, idle again, with no error), before the client hears of it."""

        def when(link: Link, direction: str, kind: bytes, payload: bytes) -> bool:
            idle_again = direction == "server" and kind == b"Z" and payload[:1] == b"I"
            return idle_again and link.ran_text(text, value) and not link.failed

        return self._add(Cut(when, times))

    def cut_before_commit(self, text: str, times: int = 1, value: bytes = b"") -> Cut:
        """Cut a connection whose transaction ran a statement containing `text` (bound with parameters holding
        `value`) when the client asks to commit it (COMMIT, or the Sync that ends a statement outside a
        transaction block), before the server gets it."""

        def when(link: Link, direction: str, kind: bytes, payload: bytes) -> bool:
            if direction != "client" or not link.ran_text(text, value) or link.failed:
                return False
            if kind == b"Q":
                return _sql(payload).strip().rstrip(";").strip().upper() in ("COMMIT", "END")
            return kind == b"S" and link.status == "I"

        return self._add(Cut(when, times))

    def cut_answer(self, times: int = 1) -> Cut:
        """Cut a connection when the upstream's answer arrives (raw mode: a gateway took the request)."""
        return self._add(Cut(lambda link, direction, kind, payload: direction == "server", times))

    def cut_all(self) -> None:
        """Cut every connection now."""
        self._run(self._cut_all())

    def _add(self, cut: Cut) -> Cut:
        async def add() -> None:
            self.cuts.append(cut)

        self._run(add())  # in force before this returns
        return cut

    # --- the proxy ------------------------------------------------------------------------------------

    def _run(self, coroutine):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._cut_all()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=10)

    async def _cut_all(self) -> None:
        for link in list(self.links):
            _close(link)

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        try:
            try:
                if isinstance(self.upstream, str):
                    server_reader, server_writer = await asyncio.open_unix_connection(self.upstream)
                else:
                    server_reader, server_writer = await asyncio.open_connection(*self.upstream)
            except OSError:  # the server is away: the client sees its connection refused, as it would
                client_writer.transport.abort()
                return
            self.connections += 1
            link = Link(client_writer, server_writer)
            self.links.add(link)
            try:
                await asyncio.gather(
                    self._pump(link, client_reader, server_writer, "client"),
                    self._pump(link, server_reader, client_writer, "server"),
                )
            finally:
                _close(link)
                self.links.discard(link)
        finally:
            self._handlers.discard(handler)

    async def _pump(
        self, link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: str
    ) -> None:
        startup = direction == "client"  # a client's first message (or an SSL request) has no type byte
        try:
            while not link.cut:
                if not self.postgres:
                    raw = await reader.read(65536)
                    if not raw:
                        break
                    kind, payload = b"", raw
                elif startup:
                    head = await reader.readexactly(4)
                    payload = await reader.readexactly(struct.unpack("!I", head)[0] - 4)
                    kind, raw = b"", head + payload
                    if struct.unpack("!I", payload[:4])[0] in (SSL_REQUEST, GSSENC_REQUEST):
                        link.answer_pending = True  # the server answers with one byte; the startup follows
                    else:
                        startup = False
                else:
                    kind = await reader.readexactly(1)
                    if link.answer_pending:  # the server's one-byte answer to an SSL request: 'N' (no)
                        link.answer_pending = False
                        writer.write(kind)
                        await writer.drain()
                        continue
                    head = await reader.readexactly(4)
                    payload = await reader.readexactly(struct.unpack("!I", head)[0] - 4)
                    raw = kind + head + payload
                if self.postgres:
                    _observe_before(link, direction, kind, payload)
                for cut in self.cuts:
                    if cut.done < cut.times and cut.when(link, direction, kind, payload):
                        cut.done += 1
                        if cut.done == cut.times:
                            cut.fired.set()
                        return  # the finally cuts the link: nothing more passes either way
                writer.write(raw)
                await writer.drain()
                if self.postgres:
                    _observe_after(link, direction, kind, payload)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            _close(link)


def _close(link: Link) -> None:
    link.cut = True
    for writer in (link.client, link.server):
        with contextlib.suppress(Exception):
            writer.transport.abort()  # a reset, at once: no graceful end for what was cut


def _sql(payload: bytes) -> str:
    return payload.split(b"\0", 1)[0].decode("utf-8", "replace")


def _observe_before(link: Link, direction: str, kind: bytes, payload: bytes) -> None:
    """What a message tells before a rule looks at it: the statements the client runs."""
    if direction == "client":
        if kind == b"P":  # Parse: name, query
            name, rest = payload.split(b"\0", 1)
            link.statements[name.decode()] = _sql(rest)
        elif kind == b"B":  # Bind: portal, statement, then the parameters
            _, statement, parameters = payload.split(b"\0", 2)
            link.ran.append((link.statements.get(statement.decode(), ""), parameters))
        elif kind == b"Q":  # a simple query
            link.ran.append((_sql(payload), b""))
    elif kind == b"E":
        link.failed = True


def _observe_after(link: Link, direction: str, kind: bytes, payload: bytes) -> None:
    """What a message passed on changes: the end of a transaction."""
    if direction == "server" and kind == b"Z":
        link.status = payload[:1].decode()
        if link.status == "I":  # the transaction is over (committed or rolled back)
            link.ran.clear()
            link.failed = False


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the sender opens up to 20 connections at once: never refused for a full backlog
    daemon_threads = True


class Receiver:
    """A status callback receiver on loopback that keeps every post's JSON body and answers 204. With
    `hold_after`, once it has kept that many, it holds every further post unanswered (`held` counts them)
    until `release()`: the sender then has posts in flight for sure (e.g. when it is killed)."""

    def __init__(self, hold_after: int | None = None) -> None:
        received: list[dict[str, Any]] = []
        self.received = received
        self.held = 0
        self.gate = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if hold_after is not None and len(received) >= hold_after and not receiver.gate.is_set():
                    receiver.held += 1
                    receiver.gate.wait(timeout=60)
                received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/callbacks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def release(self) -> None:
        """Answer the held posts (to a sender that may be gone) and hold no more."""
        self.gate.set()

    def stop(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


def post_message(base: str, api_key: str, key: str, timeout: float = 10) -> tuple[int | None, str | None]:
    """One POST /v1/messages with Idempotency-Key `key`, as a client does: (status, message id), or (None, None)
    when the connection failed (no answer: the outcome is unknown)."""
    request = urllib.request.Request(
        f"{base}/v1/messages",
        method="POST",
        data=json.dumps({"to": "+15551234567", "body": f"message {key}"}).encode(),
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json", "Idempotency-Key": key},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, str(json.loads(response.read())["id"])
    except urllib.error.HTTPError as error:
        return error.code, None
    except OSError:
        return None, None


class OwnServer:
    """An embedded PostgreSQL in `data_dir` (its own socket there), for a test that crashes it. Settings as a
    production server would have them where it matters: synchronous commit on (the default); fsync off only
    spares the disk, since `pg_ctl stop -m immediate` ends the server's processes, not the machine (what was
    written to the kernel survives, what waited in the server's WAL buffers is lost)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.dsn = embedded.start(data_dir)
        query = parse_qs(urlsplit(self.dsn).query)
        self.socket_dir = query["host"][0]
        self.socket_path = str(Path(self.socket_dir) / f".s.PGSQL.{query.get('port', ['5432'])[0]}")
        with psycopg.connect(self.admin_dsn, autocommit=True) as connection:
            connection.execute("ALTER SYSTEM SET fsync = off")
            connection.execute("SELECT pg_reload_conf()")

    @property
    def admin_dsn(self) -> str:
        return self.dsn.replace("/fairlane?", "/postgres?")

    def crash(self) -> None:
        """Stop every server process at once, as a crash does: no checkpoint, nothing flushed."""
        self._pg_ctl("stop", "-m", "immediate")

    def start(self) -> None:
        """Start it again in the same directory and socket (crash recovery replays the WAL)."""
        self._pg_ctl("-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.data_dir / "log"), "start")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            embedded.stop(self.data_dir)

    def _pg_ctl(self, *args: str) -> None:
        pgserver = embedded._pgserver()
        pgserver.pg_ctl(["-w", *args], pgdata=self.data_dir, user=embedded._server_user(), timeout=60)
