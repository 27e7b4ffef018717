"""The carrier simulator's SMPP 3.4 side (`fairlane simulator --smpp-port P`): an SMSC that takes transceiver
binds and submit_sm, and sends delivery receipts back as deliver_sm. PDUs are aiosmpplib's, as in the
gateway (service/workers/gateways/smpp_session.py); this module frames them and plays the carrier.

Like the HTTP side (tools/simulator/app.py, with which it shares the seeded draws, the per-destination
limits and the counts of `GET /stats` and `GET /received`) it enforces its own rate per destination
(rate + burst parts in any sliding second, ESME_RTHROTTLED beyond), and also: the credentials of its
accounts (`[smpp.accounts.<system_id>]`, none: any system_id binds, counted under the destination named
like it), at most `max_binds` binds per account (ESME_RBINDFAIL beyond), at most `window` unanswered submit_sm
per bind (ESME_RMSGQFUL beyond: the client broke its window), latency, failures (ESME_RMSGQFUL transient,
ESME_RINVDSTADR permanent), random throttles, sessions dropped with the window full (`drop_after`), receipts
delayed, late, twice, and for ids it never gave; and for the gateway's own tests: generic_nack, slow answers,
enquire_link unanswered, its own unbind. A receipt goes over any bind of the account that is up, and again
later (up to about 30 s) until one answers it with ESME_ROK. The fairlane message id comes in a
vendor-specific TLV (MESSAGE_ID_TAG, the gateway's `message_id_tlv`): a part received twice counts as a
duplicate key."""

import asyncio
import collections
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiosmpplib import (
    BindTransceiver,
    BindTransceiverResp,
    DeliverSm,
    EnquireLinkResp,
    GenericNack,
    OptionalParam,
    PhoneNumber,
    SmppCommand,
    SmppCommandStatus,
    SmppMessage,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
)
from aiosmpplib.state import (
    MESSAGE_STATE,
    RECEIPTED_MESSAGE_ID,
    SAR_MSG_REF_NUM,
    SAR_SEGMENT_SEQNUM,
    SAR_TOTAL_SEGMENTS,
)

from service.workers.gateways.smpp_session import Header, pdu_header, read_pdu
from tools.simulator.config import SimulatorConfig

logger = logging.getLogger(__name__)
Status = SmppCommandStatus
MESSAGE_ID_TAG = 0x1410
"""The vendor-specific TLV in which the simulator reads the fairlane message id (its idempotency key)."""


@dataclass(eq=False)
class Bind:
    system_id: str
    destination: str
    writer: asyncio.StreamWriter
    outstanding: int = 0
    submitted: int = 0
    dropping: bool = False
    sequence: int = 0
    answers: dict[int, asyncio.Future[int]] = field(default_factory=dict)

    def send(self, message: SmppMessage) -> None:
        if not self.writer.is_closing():
            self.writer.write(message.pdu())

    def next_sequence(self) -> int:
        self.sequence = self.sequence % 0x7FFFFFFF + 1
        return self.sequence


class SmppCarrier:
    def __init__(self, simulator: Any, config: SimulatorConfig) -> None:
        self.simulator = simulator  # tools.simulator.app.Simulator: shared draws, limits and counts
        self.config = config
        self.smpp = config.smpp
        self.binds: dict[str, set[Bind]] = collections.defaultdict(set)
        self.peak_binds: collections.Counter[str] = collections.Counter()
        self.counts: collections.Counter[str] = collections.Counter()
        self.drops = 0
        self.submits = 0
        """submit_sm received over all binds."""
        self.unbound = False
        self.tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None

    async def start(self, host: str, port: int, sock: Any = None) -> str:
        """Listen (on `sock` when given); returns the address as smpp://host:port."""
        if sock is not None:
            self.server = await asyncio.start_server(self._session, sock=sock)
        else:
            self.server = await asyncio.start_server(self._session, host, port)
        bound = self.server.sockets[0].getsockname()
        return f"smpp://{bound[0]}:{bound[1]}"

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for binds in self.binds.values():
            for bind in binds:
                bind.writer.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def stats(self) -> dict[str, Any]:
        return {
            "binds": {system_id: len(binds) for system_id, binds in self.binds.items()},
            "peak_binds": dict(self.peak_binds),
            **dict(self.counts),
        }

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # --- a session ---------------------------------------------------------------------------------------

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        bind: Bind | None = None
        try:
            header, pdu = await read_pdu(reader)
            bind = self._bind(header, pdu, writer)
            if bind is None:
                await writer.drain()
                return
            while True:
                header, pdu = await read_pdu(reader)
                self._dispatch(bind, header, pdu)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            if bind is not None:
                self.binds[bind.system_id].discard(bind)
                for answer in bind.answers.values():
                    if not answer.done():
                        answer.set_result(-1)
            writer.close()

    def _bind(self, header: Header, pdu: bytes, writer: asyncio.StreamWriter) -> Bind | None:
        """A bind_transceiver checked against the accounts and the bind limit; None when refused."""
        if header[1] != SmppCommand.BIND_TRANSCEIVER:
            writer.write(GenericNack(sequence_num=header[3], command_status=Status.ESME_RINVBNDSTS).pdu())
            return None
        request = BindTransceiver.from_pdu(pdu, pdu_header(header))
        assert isinstance(request, BindTransceiver)
        accounts = self.smpp.accounts
        account = accounts.get(request.system_id)
        status = Status.ESME_ROK
        if accounts and account is None:
            status = Status.ESME_RINVSYSID
        elif account is not None and account.password != request.password:
            status = Status.ESME_RINVPASWD
        elif len(self.binds[request.system_id]) >= self.smpp.max_binds:
            status = Status.ESME_RBINDFAIL
            self.counts["binds_refused"] += 1
        writer.write(BindTransceiverResp(sequence_num=header[3], command_status=status, system_id="fairlane-sim").pdu())
        if status != Status.ESME_ROK:
            if status != Status.ESME_RBINDFAIL:
                self.counts["binds_unauthorised"] += 1
            return None
        destination = (account.destination if account is not None else None) or request.system_id
        bind = Bind(request.system_id, destination, writer)
        self.binds[request.system_id].add(bind)
        self.peak_binds[request.system_id] = max(self.peak_binds[request.system_id], len(self.binds[request.system_id]))
        self.counts["binds_accepted"] += 1
        return bind

    def _dispatch(self, bind: Bind, header: Header, pdu: bytes) -> None:
        command, sequence = header[1], header[3]
        if command == SmppCommand.SUBMIT_SM:
            bind.submitted += 1
            self.submits += 1
            if self.smpp.nack_every and self.submits % self.smpp.nack_every == 0:
                self.counts["nacks"] += 1
                bind.send(GenericNack(sequence_num=sequence, command_status=Status.ESME_RSYSERR))
                return
            if bind.dropping:
                bind.outstanding += 1  # the session is being dropped: nothing is answered any more
                return
            if bind.outstanding >= self.smpp.window:
                self.counts["window_refused"] += 1
                bind.send(SubmitSmResp(sequence_num=sequence, command_status=Status.ESME_RMSGQFUL))
                return
            bind.outstanding += 1
            slow = bool(self.smpp.slow_every) and self.submits % self.smpp.slow_every == 0
            self._spawn(self._submit(bind, header, pdu, slow))
            if self.smpp.drop_after and bind.submitted >= self.smpp.drop_after and self.drops < self.smpp.max_drops:
                self.drops += 1
                bind.dropping = True
                self._spawn(self._drop(bind))
        elif command == SmppCommand.DELIVER_SM_RESP:
            answer = bind.answers.pop(sequence, None)
            if answer is not None and not answer.done():
                answer.set_result(header[2])
        elif command == SmppCommand.ENQUIRE_LINK:
            if self.smpp.answer_enquire_link:
                bind.send(EnquireLinkResp(sequence_num=sequence))
            else:
                self.counts["enquire_links_unanswered"] += 1
        elif command == SmppCommand.UNBIND_RESP:
            self.counts["unbind_resps"] += 1
        elif command == SmppCommand.UNBIND:
            self.counts["unbinds"] += 1
            bind.send(UnbindResp(sequence_num=sequence))
            bind.writer.close()
        elif not command & 0x80000000:
            bind.send(GenericNack(sequence_num=sequence, command_status=Status.ESME_RINVCMDID))

    async def _drop(self, bind: Bind) -> None:
        """Drop the TCP session (a reset) once the client's window is full, answering nothing more: the
        outstanding submit_sm were never accepted. Full: no new submit_sm for 100 ms (at most 1 s)."""
        deadline = time.monotonic() + 1.0
        seen, quiet_since = bind.submitted, time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - quiet_since < 0.1:
            await asyncio.sleep(0.005)
            if bind.submitted != seen:
                seen, quiet_since = bind.submitted, time.monotonic()
        self.counts["sessions_dropped"] += 1
        self.counts["dropped_unanswered"] += bind.outstanding
        transport = bind.writer.transport
        transport.abort()

    async def _submit(self, bind: Bind, header: Header, pdu: bytes, slow: bool) -> None:
        simulator, config = self.simulator, self.config
        try:
            request = SubmitSm.from_pdu(pdu, pdu_header(header), "gsm0338")
            assert isinstance(request, SubmitSm)
        except (ValueError, UnicodeDecodeError, LookupError, AssertionError):
            bind.outstanding -= 1
            bind.send(SubmitSmResp(sequence_num=header[3], command_status=Status.ESME_RINVPARLEN))
            return
        low, high = config.latency_ms
        latency = simulator.random.uniform(low, high) / 1000.0
        if slow:
            self.counts["slow_answers"] += 1
        await asyncio.sleep(self.smpp.slow_ms / 1000.0 if slow else latency)
        if bind.dropping:
            return  # never answered: the session goes down with it
        bind.outstanding -= 1
        if bind.writer.is_closing():
            self.counts["closed_unanswered"] += 1  # the client went meanwhile: not accepted
            return
        status, provider_id = self._decide(bind, request)
        bind.send(SubmitSmResp(sequence_num=header[3], command_status=status, message_id=provider_id))
        if status == Status.ESME_ROK and request.registered_delivery & 1 and self.smpp.receipts:
            self._spawn(self._receipts(bind, request, provider_id))
        if self.smpp.unbind_after and bind.submitted >= self.smpp.unbind_after and not self.unbound:
            self.unbound = True
            self.counts["unbinds_sent"] += 1
            bind.send(Unbind(sequence_num=bind.next_sequence()))

    def _decide(self, bind: Bind, request: SubmitSm) -> tuple[SmppCommandStatus, str]:
        simulator, config = self.simulator, self.config
        draw = simulator.random.random()
        if draw < config.throttle_rate:
            simulator.throttled[bind.destination] += 1
            return Status.ESME_RTHROTTLED, ""
        draw -= config.throttle_rate
        if draw < config.failure_rate:
            return Status.ESME_RMSGQFUL, ""
        draw -= config.failure_rate
        if draw < config.permanent_failure_rate:
            return Status.ESME_RINVDSTADR, ""
        now = time.monotonic() - simulator.started
        window = simulator.windows.get(bind.destination)
        if window is not None and not window.admit(now, 1):  # every submit_sm is one segment
            simulator.throttled[bind.destination] += 1
            return Status.ESME_RTHROTTLED, ""
        params = {param.tag: param.value for param in request.optional_params or []}
        message_id = str(params.get(MESSAGE_ID_TAG, ""))
        part = int(params.get(SAR_SEGMENT_SEQNUM, 1))
        simulator.keys[f"smpp:{message_id}#{part}" if message_id else uuid.uuid4().hex] += 1
        simulator.per_second[bind.destination][int(now)] += 1
        provider_id = uuid.uuid4().hex[:20]
        simulator.received.append(
            {
                "id": message_id,
                "destination": bind.destination,
                "system_id": bind.system_id,
                "to": request.destination.number,
                "from": request.source.number,
                "body": request.short_message or request.message_payload,
                "encoding": "UCS-2" if request.encoding == "ucs2" else "GSM-7",
                "reference": params.get(SAR_MSG_REF_NUM),
                "part": part,
                "parts": int(params.get(SAR_TOTAL_SEGMENTS, 1)),
                "segments": 1,
                "provider_id": provider_id,
                "at": now,
                "idempotency_key": message_id,
            }
        )
        return Status.ESME_ROK, provider_id

    # --- receipts ----------------------------------------------------------------------------------------

    async def _receipts(self, bind: Bind, request: SubmitSm, provider_id: str) -> None:
        simulator, config = self.simulator, self.config
        random = simulator.random
        low, high = config.receipt_delay_ms
        if random.random() < self.smpp.late_receipt_rate:
            low, high = self.smpp.late_receipt_delay_ms
            self.counts["late_receipts"] += 1
        delivered = random.random() >= config.undelivered_rate
        copies = 2 if random.random() < config.duplicate_receipt_rate else 1
        receipts = [(provider_id, delivered)] * copies
        if random.random() < self.smpp.unknown_receipt_rate:
            receipts.append((f"unknown-{uuid.uuid4().hex[:12]}", True))
            self.counts["unknown_receipts"] += 1
        for receipted, ok in receipts:
            await asyncio.sleep(random.uniform(low, high) / 1000.0)
            stat, state, err = ("DELIVRD", 2, "000") if ok else ("UNDELIV", 5, "005")
            text = f"id:{receipted} sub:001 dlvrd:{'001' if ok else '000'} submit date:2611301200 done date:2611301200 "
            receipt = DeliverSm(
                short_message=f"{text}stat:{stat} err:{err} text:",
                source=PhoneNumber(request.destination.number),
                destination=PhoneNumber(request.source.number),
                esm_class=0x04,
                registered_delivery=0,
                optional_params=[OptionalParam(RECEIPTED_MESSAGE_ID, receipted), OptionalParam(MESSAGE_STATE, state)],
            )
            await self._deliver(bind.system_id, receipt)

    async def _deliver(self, system_id: str, receipt: DeliverSm) -> None:
        """Over any bind of the account that is up, again and again (up to about 30 s) until answered ROK."""
        for attempt in range(12):
            binds = [b for b in self.binds[system_id] if not b.dropping and not b.writer.is_closing()]
            if binds:
                bind = binds[attempt % len(binds)]
                receipt.sequence_num = bind.next_sequence()
                answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()
                bind.answers[receipt.sequence_num] = answer
                bind.send(receipt)
                with contextlib.suppress(TimeoutError):
                    if await asyncio.wait_for(answer, 5.0) == Status.ESME_ROK:
                        self.counts["receipts_delivered"] += 1
                        return
                bind.answers.pop(receipt.sequence_num, None)
                self.counts["receipts_retried"] += 1
            await asyncio.sleep(min(0.1 * 2**attempt, 5.0))
        self.counts["receipts_abandoned"] += 1
