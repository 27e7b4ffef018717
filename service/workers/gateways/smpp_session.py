"""One SMPP 3.4 transceiver bind (docs/decisions/0016): a TCP session to the carrier, bound with the gateway's
credentials, carrying at most `window` outstanding submit_sm, kept alive with enquire_link, answering the
carrier's deliver_sm (receipts, through a handler), enquire_link and unbind, and ended with unbind.

PDUs are encoded and decoded by aiosmpplib; this module frames them (the 16-octet header says the length),
numbers requests and matches responses by sequence number. Everything outstanding fails with `SessionLost`
when the session ends however it ends, so a sender never waits on a dead bind.

The window: a sender takes a place first (`take_place`, handed out by the gateway in order of arrival) and
sends its submit_sm on it. The place is given back when the carrier answers, or when the session ends, never
before: a submit_sm whose sender gave up waiting still counts in the carrier's window. A submit_sm not answered
within the response time ends the session (a bind that does not answer is broken, and the carrier may still
hold the PDU)."""

import asyncio
import contextlib
import logging
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiosmpplib import (
    BindTransceiver,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    PduHeader,
    SmppCommand,
    SmppCommandStatus,
    SmppMessage,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
)
from aiosmpplib.protocol import BindTransceiverResp

from service.workers.gateways import smpp_text

logger = logging.getLogger(__name__)
HEADER = struct.Struct("!IIII")  # command_length, command_id, command_status, sequence_number
MAX_PDU = 70_000
"""Longer is a broken stream (a message_payload TLV holds at most 64 KiB)."""
Header = tuple[int, int, int, int]

DeliverHandler = Callable[[smpp_text.Delivered], Awaitable[int]]
"""Handles a deliver_sm; returns the command status of its deliver_sm_resp."""


class SessionLost(Exception):
    """The session ended (closed, lost, unbound) before the answer came."""


class BindRefused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"bind refused: 0x{status:08X}")
        self.status = status


async def read_pdu(reader: asyncio.StreamReader) -> tuple[Header, bytes]:
    """The next PDU of a stream (also the simulator's): its header's fields and all its octets; ValueError
    for a length no PDU has."""
    head = await reader.readexactly(HEADER.size)
    header: Header = HEADER.unpack(head)
    if not HEADER.size <= header[0] <= MAX_PDU:
        raise ValueError(f"PDU length {header[0]}")
    return header, head + await reader.readexactly(header[0] - HEADER.size)


def pdu_header(header: Header) -> PduHeader:
    """aiosmpplib's header of a PDU read by `read_pdu` (ValueError for a command or status it does not know)."""
    return PduHeader(header[0], SmppCommand(header[1]), SmppCommandStatus(header[2]), header[3])


@dataclass(frozen=True)
class SessionSettings:
    host: str
    port: int
    system_id: str
    password: str = field(repr=False)
    system_type: str
    window: int
    enquire_link_seconds: float
    response_seconds: float
    """How long an answer may take (bind, submit_sm, enquire_link, unbind)."""


class Session:
    def __init__(
        self, settings: SessionSettings, on_deliver: DeliverHandler, name: str, on_room: Callable[[], None]
    ) -> None:
        self.settings = settings
        self.on_deliver = on_deliver
        self.name = name
        self.on_room = on_room
        """Called whenever a window place frees up (or the session ends)."""
        self.emptied = asyncio.Event()
        """Set while nothing is outstanding (no place taken)."""
        self.emptied.set()
        self._reserved = 0
        """Places taken whose submit_sm has not gone yet."""
        self._in_window: set[int] = set()
        """Sequence numbers of the submit_sm sent and not answered."""
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._sequence = 0
        self._waiting: dict[int, asyncio.Future[tuple[int, bytes]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = asyncio.Event()
        self._unbinding = False

    @property
    def up(self) -> bool:
        return self._writer is not None and not self._closed.is_set()

    @property
    def outstanding(self) -> int:
        return self._reserved + len(self._in_window)

    def room(self) -> int:
        """Free places in the window (none once the session has ended)."""
        return self.settings.window - self.outstanding if self.up else 0

    def take_place(self) -> None:
        self._reserved += 1
        self.emptied.clear()

    def give_back_place(self) -> None:
        """A place taken and not used."""
        self._reserved -= 1
        self._place_freed()

    def _place_freed(self) -> None:
        if self.outstanding == 0:
            self.emptied.set()
        self.on_room()

    # --- opening, running, ending ----------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and bind as a transceiver; raises OSError, EOFError, TimeoutError or BindRefused (and
        whatever aiosmpplib raises for an answer it cannot read). Cancelling it closes the connection."""
        timeout = self.settings.response_seconds
        reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(self.settings.host, self.settings.port), timeout
        )
        self._reader = reader
        try:
            bind = BindTransceiver(
                sequence_num=self._next_sequence(),
                system_id=self.settings.system_id,
                password=self.settings.password,
                system_type=self.settings.system_type,
            )
            self._send(bind)
            header, pdu = await asyncio.wait_for(read_pdu(reader), timeout)
            if header[1] != SmppCommand.BIND_TRANSCEIVER_RESP:
                raise BindRefused(header[2] or SmppCommandStatus.ESME_RBINDFAIL)
            if header[2] != SmppCommandStatus.ESME_ROK:
                raise BindRefused(header[2])
            BindTransceiverResp.from_pdu(pdu, pdu_header(header))
        except BaseException:
            self.abort()
            raise

    async def run(self) -> None:
        """Read and answer until the session ends; then fail whatever is outstanding."""
        reader = self._reader
        assert reader is not None, "open() first"
        keeper = asyncio.create_task(self._keep_alive())
        try:
            while True:
                header, pdu = await read_pdu(reader)
                self._dispatch(header, pdu)
        except (OSError, EOFError, SessionLost, ValueError) as error:
            if not self._closed.is_set() and not self._unbinding:
                logger.warning("smpp session lost", extra={"bind": self.name, "error": repr(error)})
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
            self.abort()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def unbind(self) -> None:
        """End the session cleanly: unbind, wait for unbind_resp (at most the response time), close."""
        self._unbinding = True  # the carrier may close the connection once it has answered
        if self.up:
            with contextlib.suppress(SessionLost, TimeoutError, OSError):
                await self._request(Unbind())
        self.abort()

    def abort(self) -> None:
        """Close the connection now; everything outstanding fails with SessionLost, the window empties."""
        self._closed.set()
        if self._writer is not None:
            self._writer.close()
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(SessionLost(self.name))
        self._waiting.clear()
        self._in_window.clear()
        self._place_freed()

    # --- requests --------------------------------------------------------------------------------------

    async def submit(self, message: SubmitSm) -> tuple[int, str]:
        """Send one submit_sm on a place taken (`take_place`); (command status, the carrier's message id).
        Raises SessionLost, or TimeoutError when no answer came within the response time: the session is
        aborted then (its place is given back with the window)."""
        self._reserved -= 1
        try:
            sequence, answer = self._send_request(message)
        except BaseException:
            self._place_freed()
            raise
        self._in_window.add(sequence)  # until the answer comes, whoever waits for it (_dispatch)
        try:
            status, pdu = await asyncio.wait_for(answer, self.settings.response_seconds)
        except TimeoutError:
            logger.warning("smpp response timeout", extra={"bind": self.name, "sequence": sequence})
            self.abort()
            raise
        if status != SmppCommandStatus.ESME_ROK or len(pdu) <= HEADER.size:
            return status, ""
        answer_pdu = SubmitSmResp.from_pdu(
            pdu, PduHeader(len(pdu), SmppCommand.SUBMIT_SM_RESP, SmppCommandStatus.ESME_ROK, sequence)
        )
        assert isinstance(answer_pdu, SubmitSmResp)
        return status, answer_pdu.message_id

    async def _request(self, message: SmppMessage) -> tuple[int, bytes]:
        """A request outside the window (enquire_link, unbind), answered within the response time."""
        sequence, answer = self._send_request(message)
        try:
            return await asyncio.wait_for(answer, self.settings.response_seconds)
        finally:
            self._waiting.pop(sequence, None)

    def _send_request(self, message: SmppMessage) -> tuple[int, asyncio.Future[tuple[int, bytes]]]:
        if not self.up:
            raise SessionLost(self.name)
        message.sequence_num = sequence = self._next_sequence()
        answer: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self._waiting[sequence] = answer
        try:
            self._send(message)
        except BaseException:
            del self._waiting[sequence]
            raise
        return sequence, answer

    async def _keep_alive(self) -> None:
        """enquire_link every enquire_link_seconds; a link that does not answer in time is dead."""
        while True:
            await asyncio.sleep(self.settings.enquire_link_seconds)
            try:
                await self._request(EnquireLink())
            except (TimeoutError, SessionLost):
                logger.warning("smpp enquire_link unanswered", extra={"bind": self.name})
                self.abort()
                return

    # --- the stream ------------------------------------------------------------------------------------

    def _next_sequence(self) -> int:
        self._sequence = self._sequence % 0x7FFFFFFF + 1
        return self._sequence

    def _send(self, message: SmppMessage) -> None:
        if self._writer is None or self._closed.is_set():
            raise SessionLost(self.name)
        self._writer.write(message.pdu())

    def _dispatch(self, header: Header, pdu: bytes) -> None:
        length, command, status, sequence = header
        if command & 0x80000000 or command == SmppCommand.GENERIC_NACK:  # an answer
            answer = self._waiting.pop(sequence, None)
            if answer is not None and not answer.done():
                # a generic_nack to a request: the carrier could not read it (worth another attempt)
                nack = command == SmppCommand.GENERIC_NACK
                answer.set_result((SmppCommandStatus.ESME_RX_T_APPN if nack else status, pdu))
            if sequence in self._in_window:
                self._in_window.discard(sequence)
                self._place_freed()
            return
        if command == SmppCommand.ENQUIRE_LINK:
            self._send(EnquireLinkResp(sequence_num=sequence))
        elif command == SmppCommand.UNBIND:
            self._send(UnbindResp(sequence_num=sequence))
            logger.info("smpp unbound by the carrier", extra={"bind": self.name})
            self._unbinding = True
            raise SessionLost("unbound by the carrier")
        elif command == SmppCommand.DELIVER_SM:
            task = asyncio.create_task(self._deliver(header, pdu))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._send(GenericNack(sequence_num=sequence, command_status=SmppCommandStatus.ESME_RINVCMDID))

    async def _deliver(self, header: Header, pdu: bytes) -> None:
        """Answer a deliver_sm once its handler has kept it (a receipt the handler could not keep gets a
        temporary error: the carrier sends it again later). One aiosmpplib refuses (text not in its
        data_coding, a data_coding it does not know, an address too long) is read leniently."""
        delivered: smpp_text.Delivered | None
        try:
            message = DeliverSm.from_pdu(pdu, pdu_header(header), smpp_text.GSM7)
            assert isinstance(message, DeliverSm)
            delivered = smpp_text.delivered(message)
        except Exception:  # whatever aiosmpplib could not read
            delivered = smpp_text.read_leniently(pdu)
            logger.info(
                "smpp deliver_sm read leniently",
                extra={"bind": self.name, "pdu": pdu.hex()[:400], "read": bool(delivered)},
            )
        status = int(SmppCommandStatus.ESME_RX_P_APPN) if delivered is None else await self.on_deliver(delivered)
        with contextlib.suppress(SessionLost, OSError):
            self._send(DeliverSmResp(sequence_num=header[3], command_status=SmppCommandStatus(status)))
