"""The `smpp` gateway kind (docs/decisions/0016): SMPP 3.4 transceiver binds to the carrier, shared by the
destinations of a gateway in a dispatcher process.

Binds across processes: at most `binds` binds of a gateway are up however many dispatchers run. Each bind
holds a slot, a session advisory lock (gateway, slot) on its process's lock connection for that gateway, taken
before it connects and given back once its TCP session has closed; a process that dies loses its slots with
its connection. A process takes free slots up to its share (`binds` / the processes that want binds of the
gateway, counted by a shared advisory lock each holds) one at a time, and gives back those over its share, so
the binds spread over the processes that serve the gateway's destinations. A bind that drops reconnects with
backoff on its slot; a lost lock connection (noticed at once) ends every bind of the process, bound or still
binding (its slots are gone).

Sending: a message's parts (service/workers/gateways/smpp_text.py) go one after the other, each on a window
place of the bind with the most room, places handed out in order of arrival (at most `window` outstanding
submit_sm per bind). The first part goes within the message's send slot or the message goes back to its queue
(docs/decisions/0018). The carrier's id of every part accepted is kept (fairlane.record_parts_v1) before the
answer goes back to be recorded, the first part's as the message's provider id; a retry sends only the parts
not kept yet. Receipts (deliver_sm) are kept per part (fairlane.part_receipts_v1, a few dozen a transaction)
and answered once stored; a message's receipt is applied when every part has one.
"""

import asyncio
import collections
import logging
import math
import random
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiosmpplib import NPI, TON, PhoneNumber, SmppCommandStatus, SubmitSm

from db import smpp as db_smpp
from db.dispatch import Answer, Claimed, Destination
from db.errors import FairlaneError
from db.transaction import with_retries
from service.workers.gateways import smpp_text
from service.workers.gateways.backoff import retry_delay
from service.workers.gateways.smpp_session import Session, SessionLost, SessionSettings
from service.workers.loop import DATABASE_ERRORS, wait

logger = logging.getLogger(__name__)
MANAGE_SECONDS = 0.5
"""How often a process looks at its slots (takes one free slot or gives one back at most per look)."""
LOCK_SECONDS = 10.0
"""The lock connection's connect and command timeout: one that does not answer is lost, its slots with it."""
STABLE_SECONDS = 30.0
"""A bind up this long binds again at once when it drops (its reconnect backoff starts afresh)."""
RECEIPTS_PER_TRANSACTION = 32
"""Receipts kept together: one round trip, and row locks (usage counters) held only briefly."""
THROTTLED_DELAY = 1.0


@dataclass(frozen=True)
class SmppSettings:
    session: SessionSettings
    binds: int
    source_ton_npi: tuple[int, int] | None
    dest_ton_npi: tuple[int, int]
    concatenation: str
    message_id_tag: int | None = None
    """The vendor TLV that carries the fairlane message id (`message_id_tlv`; none: not sent)."""

    @classmethod
    def read(cls, settings: dict[str, Any], response_seconds: float) -> "SmppSettings":
        session = SessionSettings(
            host=str(settings["host"]),
            port=int(settings["port"]),
            system_id=str(settings["system_id"]),
            password=str(settings["password"]),
            system_type=str(settings.get("system_type") or ""),
            window=int(settings.get("window") or 10),
            enquire_link_seconds=float(settings.get("enquire_link_seconds") or 30),
            response_seconds=response_seconds,
        )
        source = settings.get("source_ton_npi")
        dest = settings.get("dest_ton_npi") or (1, 1)
        tag = settings.get("message_id_tlv")
        return cls(
            session,
            int(settings.get("binds") or 1),
            (int(source[0]), int(source[1])) if source else None,
            (int(dest[0]), int(dest[1])),
            str(settings.get("concatenation") or "udh"),
            int(tag) if tag is not None else None,
        )


def _address(number: str, ton_npi: tuple[int, int] | None) -> PhoneNumber:
    """An SMPP address: an E.164 number without its '+' (international, E.164), an alphanumeric sender
    (alphanumeric, unknown plan), other digits (unknown type, E.164 plan), unless `ton_npi` says otherwise."""
    if ton_npi is None:
        ton_npi = (1, 1) if number.startswith("+") else (0, 1) if number.isdigit() else (5, 0)
    return PhoneNumber(number.removeprefix("+"), TON(ton_npi[0]), NPI(ton_npi[1]))


class Binds:
    """One smpp gateway's binds in this process, shared by the destinations it serves."""

    def __init__(self, dsn: str, pool: asyncpg.Pool, gateway: str, response_seconds: float) -> None:
        self.dsn = dsn
        self.pool = pool
        self.gateway = gateway
        self.response_seconds = response_seconds
        self.gateway_id: int | None = None
        self.settings: SmppSettings | None = None
        self.users = 0
        self.sessions: dict[int, Session] = {}
        """Slot -> its bind, while bound."""
        self.bound = asyncio.Event()
        """Set while a bind is up."""
        self.unrecorded: dict[str, asyncio.Event] = {}
        """The carrier's ids of parts accepted here and not recorded yet: their receipts wait for them."""
        self._raw_settings: dict[str, Any] | None = None
        self._without_settings = False
        self._slots: dict[int, asyncio.Task[None]] = {}
        self._leaving: dict[int, asyncio.Event] = {}
        self._opening: dict[int, asyncio.Task[None]] = {}
        """Slot -> its session being opened (connect and bind), cancelled when the slot is left."""
        self._waiters: collections.deque[asyncio.Future[Session]] = collections.deque()
        """Senders waiting for a window place, first come first served."""
        self._connection: asyncpg.Connection | None = None
        self._connection_lock = asyncio.Lock()
        self._closing = asyncio.Event()
        self._manager: asyncio.Task[None] | None = None
        self._leavers: set[asyncio.Task[None]] = set()
        self._unwritten: list[tuple[list[db_smpp.Part], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._receipts: list[tuple[db_smpp.Receipt, asyncio.Future[str | None]]] = []
        self._receipts_writer: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._manager is None:
            self._manager = asyncio.create_task(self._manage())

    async def close(self) -> None:
        """Every bind unbinds cleanly (after its outstanding answers, at most the response time), slots given
        back."""
        self._closing.set()
        if self._manager is not None:
            self._manager.cancel()
            await asyncio.gather(self._manager, return_exceptions=True)
        await self._leave_all()
        await asyncio.gather(*self._leavers, return_exceptions=True)
        await asyncio.gather(*(t for t in (self._writer, self._receipts_writer) if t), return_exceptions=True)
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            await connection.close()

    # --- sending ---------------------------------------------------------------------------------------

    async def take_place(self, deadline: float) -> Session:
        """A window place on the bind with the most room, in order of arrival, waiting for one until
        `deadline` (time.monotonic()): TimeoutError."""
        if not self._waiters:
            session = self._roomiest()
            if session is not None:
                session.take_place()
                return session
        waiter: asyncio.Future[Session] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._hand_out()  # a place may be free already: the first in the queue get it first
        try:
            return await asyncio.wait_for(waiter, deadline - time.monotonic())
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                waiter.result().give_back_place()  # handed a place as the wait ended: to the next one
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def _roomiest(self) -> Session | None:
        ready = [s for slot, s in self.sessions.items() if not self._leaving[slot].is_set()]
        session = max(ready, key=Session.room, default=None)
        return session if session is not None and session.room() > 0 else None

    def _hand_out(self) -> None:
        """Window places to the senders waiting for one, the first first (when a place frees up, a bind comes
        up)."""
        while self._waiters:
            if self._waiters[0].done():  # gave up waiting
                self._waiters.popleft()
                continue
            session = self._roomiest()
            if session is None:
                return
            session.take_place()
            self._waiters.popleft().set_result(session)

    async def sent_parts(self, message_id: int, parts: int) -> dict[int, str]:
        """The parts of a message (split in `parts`) the carrier accepted before, by number: its carrier id."""
        gateway_id = self.gateway_id
        if gateway_id is None:
            return {}
        try:
            async with self.pool.acquire() as connection:
                return await db_smpp.sent_parts(connection, gateway_id, message_id, parts)
        except DATABASE_ERRORS as error:  # all of them go again
            logger.warning("smpp parts sent not read", extra={"gateway": self.gateway, "error": repr(error)})
            return {}

    async def record(self, parts: list[db_smpp.Part]) -> None:
        """Keep the carrier's ids of the parts accepted, before the message's answer goes to be recorded;
        the parts of concurrent sends are written together (one statement while another is under way)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._unwritten.append((parts, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_parts())
        await asyncio.shield(done)

    async def _write_parts(self) -> None:
        while self._unwritten:
            batch, self._unwritten = self._unwritten, []
            rows = [part for parts, _ in batch for part in parts]
            try:
                gateway_id = self.gateway_id
                assert gateway_id is not None
                await with_retries(
                    self.pool,
                    lambda c, g=gateway_id, r=rows: db_smpp.record_parts(c, g, r),  # type: ignore[misc]
                    one_statement=True,
                )
            except (*DATABASE_ERRORS, AssertionError) as error:
                # the messages were sent all the same; their receipts will name unknown ids
                logger.warning("smpp parts not recorded", extra={"gateway": self.gateway, "error": repr(error)})
            for _, done in batch:
                if not done.done():
                    done.set_result(None)

    async def on_deliver(self, message: smpp_text.Delivered) -> int:
        """A deliver_sm: a receipt is kept before it is answered (with the others that came meanwhile, a few
        dozen a statement); anything else is answered and dropped."""
        if not smpp_text.is_receipt(message):
            logger.info("smpp message from a handset ignored", extra={"gateway": self.gateway})
            return int(SmppCommandStatus.ESME_ROK)
        receipt = smpp_text.receipt(message)
        if receipt is None:
            logger.warning("smpp receipt without an id", extra={"gateway": self.gateway})
            return int(SmppCommandStatus.ESME_ROK)
        if receipt.status is None:  # on its way (ENROUTE, ACCEPTD): not final yet
            return int(SmppCommandStatus.ESME_ROK)
        recording = self.unrecorded.get(receipt.provider_id)
        if recording is not None:  # the receipt overtook the part's row, written by this process in a moment
            await wait(recording, self.response_seconds)
        kept: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._receipts.append((db_smpp.Receipt(receipt.provider_id, receipt.status, receipt.error_code), kept))
        if self._receipts_writer is None or self._receipts_writer.done():
            self._receipts_writer = asyncio.create_task(self._write_receipts())
        result = await asyncio.shield(kept)
        if result is None:
            return int(SmppCommandStatus.ESME_RX_T_APPN)  # not kept: the carrier sends it again later
        if result == "unknown":  # kept: matched if another process records the part later, else pruned
            logger.info(
                "smpp receipt for an unknown id", extra={"gateway": self.gateway, "provider_id": receipt.provider_id}
            )
        elif result == "duplicate":
            logger.info("smpp duplicate receipt", extra={"gateway": self.gateway, "provider_id": receipt.provider_id})
        return int(SmppCommandStatus.ESME_ROK)

    async def _write_receipts(self) -> None:
        while self._receipts:
            batch = self._receipts[:RECEIPTS_PER_TRANSACTION]
            del self._receipts[:RECEIPTS_PER_TRANSACTION]
            gateway_id = self.gateway_id
            receipts = [receipt for receipt, _ in batch]
            results: list[str | None] = [None] * len(batch)
            try:
                assert gateway_id is not None
                results = list(
                    await with_retries(
                        self.pool,
                        lambda c, g=gateway_id, r=receipts: db_smpp.part_receipts(c, g, r),  # type: ignore[misc]
                        durable=True,  # answered to the carrier once kept: on disk first (docs/decisions/0019)
                    )
                )
            except (*DATABASE_ERRORS, FairlaneError, AssertionError) as error:
                logger.warning("smpp receipts not kept", extra={"gateway": self.gateway, "error": repr(error)})
            for (_, kept), result in zip(batch, results, strict=True):
                if not kept.done():
                    kept.set_result(result)

    # --- slots -----------------------------------------------------------------------------------------

    async def _manage(self) -> None:
        backoff = MANAGE_SECONDS
        while not self._closing.is_set():
            try:
                await self._look()
                backoff = MANAGE_SECONDS
            except Exception as error:  # the lock connection's state is unknown: its slots are given up
                expected = isinstance(error, (*DATABASE_ERRORS, TimeoutError))
                logger.warning(
                    "smpp binds not managed",
                    extra={"gateway": self.gateway, "error": repr(error)},
                    exc_info=not expected,
                )
                self._lost_connection()
                backoff = min(backoff * 2, 30.0)
            await wait(self._closing, backoff)

    async def _look(self) -> None:
        """Follow the gateway's settings; take one free slot up to this process's share, or give one back."""
        async with self._connection_lock:
            if self._connection is None or self._connection.is_closed():
                self._lost_connection()
                self._connection = await asyncpg.connect(self.dsn, timeout=LOCK_SECONDS, command_timeout=LOCK_SECONDS)
                self._connection.add_termination_listener(self._connection_ended)
                self.gateway_id = None
            found = await db_smpp.gateway(self._connection, self.gateway)
            if found is not None and self.gateway_id != found.id:
                await db_smpp.want_binds(self._connection, found.id)
                self.gateway_id = found.id
            wanting = await db_smpp.wanting_processes(self._connection, found.id) if found is not None else 1
        if found is None:
            if not self._without_settings:
                logger.warning("smpp gateway without settings", extra={"gateway": self.gateway})
                self._without_settings = True
            self._raw_settings, self.settings = None, None
            await self._leave_all()
            return
        self._without_settings = False
        if found.settings != self._raw_settings:
            old = {k: v for k, v in (self._raw_settings or {}).items() if k != "binds"}
            if old != {k: v for k, v in found.settings.items() if k != "binds"}:
                await self._leave_all()  # new address, credentials or window: bind again
            try:
                self.settings = SmppSettings.read(found.settings, self.response_seconds)
            except (KeyError, ValueError, TypeError) as error:
                logger.error("smpp settings unusable", extra={"gateway": self.gateway, "error": str(error)})
                self.settings = None
            self._raw_settings = found.settings
        if self.settings is None:
            return
        binds = self.settings.binds
        share = math.ceil(binds / max(1, wanting))
        held = sorted(slot for slot in self._slots if not self._leaving[slot].is_set())
        extra = [slot for slot in held if slot >= binds] or held[share:]
        if extra:
            leaver = asyncio.create_task(self._leave(extra[-1]))
            self._leavers.add(leaver)
            leaver.add_done_callback(self._leavers.discard)
        elif len(held) < share:
            for slot in range(binds):
                if slot not in self._slots and await self._take(slot):
                    break

    async def _take(self, slot: int) -> bool:
        async with self._connection_lock:
            assert self._connection is not None and self.gateway_id is not None
            if not await db_smpp.take_slot(self._connection, self.gateway_id, slot):
                return False
            connection = self._connection
        self._leaving[slot] = asyncio.Event()
        self._slots[slot] = asyncio.create_task(self._serve_slot(slot, connection))
        return True

    async def _serve_slot(self, slot: int, connection: asyncpg.Connection | None) -> None:
        """Bind on a slot, serve the bind, bind again with backoff when it drops, until the slot is left;
        then give the slot back (after the TCP session closed)."""
        loop = asyncio.get_running_loop()
        leaving = self._leaving[slot]
        backoff = 0.5
        name = f"{self.gateway}#{slot}"
        try:
            while not leaving.is_set() and self.settings is not None:
                session = Session(self.settings.session, self.on_deliver, name, self._hand_out)
                opening = self._opening[slot] = asyncio.create_task(session.open())
                try:
                    (error,) = await asyncio.gather(opening, return_exceptions=True)
                finally:
                    del self._opening[slot]
                if leaving.is_set():  # left while binding (cancelled, or bound a moment too late)
                    if error is None:
                        await session.unbind()
                    break
                if error is not None:
                    logger.warning("smpp bind failed", extra={"bind": name, "error": repr(error)})
                else:
                    self.sessions[slot] = session
                    self.bound.set()
                    self._hand_out()
                    logger.info("smpp bound", extra={"bind": name})
                    up_since = loop.time()
                    try:
                        await session.run()
                    finally:
                        del self.sessions[slot]
                        if not self.sessions:
                            self.bound.clear()
                    if loop.time() - up_since >= STABLE_SECONDS:
                        backoff = 0.5
                await wait(leaving, backoff * random.uniform(0.5, 1.5))
                backoff = min(backoff * 2, 30.0)
        finally:
            del self._slots[slot]
            del self._leaving[slot]
            if connection is not None and connection is self._connection and self.gateway_id is not None:
                async with self._connection_lock:
                    try:
                        await db_smpp.give_back_slot(connection, self.gateway_id, slot)
                    except (*DATABASE_ERRORS, TimeoutError):
                        pass  # the connection broke: the slot went with it

    async def _leave(self, slot: int) -> None:
        """Stop sending on a slot's bind, let its outstanding answers come (at most the response time),
        unbind, and give the slot back; a bind still opening is cancelled."""
        leaving, task = self._leaving.get(slot), self._slots.get(slot)
        if leaving is None or task is None:
            return
        leaving.set()
        opening = self._opening.get(slot)
        if opening is not None:
            opening.cancel()
        session = self.sessions.get(slot)
        if session is not None:
            await wait(session.emptied, self.response_seconds)
            await session.unbind()
            logger.info("smpp unbound", extra={"bind": f"{self.gateway}#{slot}"})
        await asyncio.gather(task, return_exceptions=True)

    async def _leave_all(self) -> None:
        await asyncio.gather(*(self._leave(slot) for slot in list(self._slots)), return_exceptions=True)

    def _connection_ended(self, connection: asyncpg.Connection) -> None:
        if connection is self._connection:
            logger.warning("smpp lock connection lost", extra={"gateway": self.gateway})
            self._lost_connection()

    def _lost_connection(self) -> None:
        """The lock connection is gone, and the slots with it: every bind ends now, bound or binding."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.terminate()
        for slot in list(self._slots):
            self._leaving[slot].set()
            opening = self._opening.get(slot)
            if opening is not None:
                opening.cancel()
            session = self.sessions.get(slot)
            if session is not None:
                session.abort()


_SHARED: dict[tuple[int, str], Binds] = {}
"""This process's binds, by (the dispatcher's pool, gateway name): one set per gateway however many of its
destinations are served."""


class SmppGateway:
    def __init__(self, destination: Destination) -> None:
        self.destination = destination
        self.binds: Binds | None = None

    async def start(self, dsn: str, pool: asyncpg.Pool, serving: Any) -> bool:
        """Bind (sharing the gateway's binds in this process); True once a bind is up, False when `serving()`
        turned false first."""
        key = (id(pool), self.destination.gateway)
        binds = _SHARED.get(key)
        if binds is None:
            binds = _SHARED[key] = Binds(dsn, pool, self.destination.gateway, self.destination.timeout_seconds)
        binds.users += 1
        binds.start()
        self.binds = binds
        while serving():
            if binds.sessions:
                return True
            await wait(binds.bound, MANAGE_SECONDS)  # `serving()` says no event when it turns: looked at again
        return False

    async def close(self) -> None:
        binds, self.binds = self.binds, None
        if binds is None:
            return
        binds.users -= 1
        if binds.users == 0:
            for key, shared in list(_SHARED.items()):
                if shared is binds:
                    del _SHARED[key]
            await binds.close()

    async def send(self, message: Claimed, send_by: float = math.inf) -> Answer:
        binds = self.binds
        settings = binds.settings if binds is not None else None
        if binds is None or settings is None:
            delay = retry_delay(message.attempts + 1)
            return Answer(message.message_id, "retry", error_code="smpp_unbound", delay=delay)
        pieces = smpp_text.parts(message.body, message.message_id, settings.concatenation, settings.message_id_tag)
        if len(pieces) != message.segments:
            logger.warning(
                "smpp parts differ from segments",
                extra={"message_id": message.message_id, "parts": len(pieces), "segments": message.segments},
            )
        try:
            source = _address(message.sender, settings.source_ton_npi)
            destination = _address(message.recipient, settings.dest_ton_npi)
        except ValueError as error:
            return Answer(message.message_id, "failed", error_code="smpp_address", error_message=str(error))
        # a retry sends only the parts the carrier did not accept before (the same reference joins them)
        sent_before = await binds.sent_parts(message.message_id, len(pieces)) if len(pieces) > 1 else {}
        submits = [
            (number, smpp_text.submit_sm(piece, message.body, source, destination, message.expires_at))
            for number, piece in enumerate(pieces, start=1)
            if number not in sent_before
        ]
        accepted: list[db_smpp.Part] = []
        recorded = asyncio.Event()
        try:
            result, code = await self._submit(binds, message, submits, len(pieces), accepted, recorded, send_by)
            if accepted:
                await binds.record(accepted)
        finally:
            recorded.set()
            for part in accepted:
                binds.unrecorded.pop(part.provider_id, None)
        if result == "sent":
            first = sent_before.get(1) or next((p.provider_id for p in accepted if p.part == 1), None)
            return Answer(message.message_id, "sent", provider_id=first or None)
        if result == "release":
            return Answer(message.message_id, "release")  # back to its queue, no attempt used
        if result == "throttled":
            return Answer(message.message_id, "throttled", error_code=code, delay=THROTTLED_DELAY)
        if result == "retry":
            return Answer(message.message_id, "retry", error_code=code, delay=retry_delay(message.attempts + 1))
        return Answer(message.message_id, "failed", error_code=code)

    async def _submit(
        self,
        binds: Binds,
        message: Claimed,
        submits: list[tuple[int, SubmitSm]],
        parts: int,
        accepted: list[db_smpp.Part],
        recorded: asyncio.Event,
        send_by: float,
    ) -> tuple[str, str | None]:
        """The parts one after the other, each on a window place, until one is not accepted (or the gateway's
        timeout passed); (sent | release | throttled | retry | failed, the error code). The first goes within
        the message's send slot (`send_by`) or not at all: released, none sent."""
        deadline = time.monotonic() + self.destination.timeout_seconds
        for number, submit in submits:
            first = not accepted
            try:
                session = await binds.take_place(min(send_by, deadline) if first else deadline)
            except TimeoutError:
                return ("release", None) if first and send_by < deadline else ("retry", "smpp_timeout")
            try:
                status, provider_id = await session.submit(submit)
            except TimeoutError:
                return "retry", "smpp_timeout"
            except SessionLost:
                return "retry", "smpp_bind_lost"
            result = smpp_text.outcome(status)
            if result != "sent":
                return result, smpp_text.status_name(status)
            binds.unrecorded[provider_id] = recorded
            accepted.append(db_smpp.Part(message.message_id, number, parts, provider_id))
        return "sent", None
