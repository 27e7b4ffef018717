"""The smpp gateway in this process against the carrier simulator's SMPP side (tools/simulator/smpp.py) on
loopback: one bind's window, answers and endings (service/workers/gateways/smpp_session.py), and the gateway's
binds and sends (service/workers/gateways/smpp.py) with a real database (docs/decisions/0016)."""

import asyncio
import contextlib
import datetime as dt
import logging
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiosmpplib import DeliverSm, PhoneNumber

from db import pool as db_pool
from db import smpp as db_smpp
from db.dispatch import Claimed, Destination
from service.model.fields import parse
from service.workers.gateways import smpp_text
from service.workers.gateways.smpp import Binds, SmppGateway, SmppSettings
from service.workers.gateways.smpp_session import Session, SessionLost, SessionSettings
from tests.integration.fixtures import apply_config
from tools.simulator.app import Simulator
from tools.simulator.config import SimulatorConfig
from tools.simulator.smpp import MESSAGE_ID_TAG, SmppCarrier


@contextlib.asynccontextmanager
async def _carrier(config: dict[str, Any]) -> AsyncIterator[tuple[SmppCarrier, int]]:
    """The simulator's SMPP side on a free loopback port (any system_id binds), and that port."""
    parsed = parse(SimulatorConfig, {"latency_ms": [1, 2], **config}, "simulator config")
    simulator = Simulator(parsed)
    carrier = simulator.smpp = SmppCarrier(simulator, parsed)
    address = await carrier.start("127.0.0.1", 0)
    try:
        yield carrier, int(address.rsplit(":", 1)[1])
    finally:
        await carrier.stop()


async def _kept(delivered: smpp_text.Delivered) -> int:
    return 0


async def _open(
    port: int, *, window: int = 2, enquire: float = 30.0, response: float = 5.0, on_deliver=_kept
) -> tuple[Session, asyncio.Task[None]]:
    settings = SessionSettings("127.0.0.1", port, "fairlane", "secret", "", window, enquire, response)
    session = Session(settings, on_deliver, "test#0", lambda: None)
    await session.open()
    return session, asyncio.create_task(session.run())


def _submit_sm(text: str = "hello") -> Any:
    part = smpp_text.parts(text, 1, "udh", MESSAGE_ID_TAG)[0]
    return smpp_text.submit_sm(part, text, PhoneNumber("15550000001"), PhoneNumber("15550000002"), None)


async def _submit(session: Session) -> int:
    session.take_place()
    status, _ = await session.submit(_submit_sm())
    return status


# --- one bind ------------------------------------------------------------------------------------------------


async def test_a_generic_nack_is_worth_another_attempt_and_frees_its_place():
    async with _carrier({"smpp": {"nack_every": 2}}) as (carrier, port):
        session, running = await _open(port)
        outcomes = [smpp_text.outcome(await _submit(session)) for _ in range(3)]
        assert outcomes == ["sent", "retry", "sent"]
        assert carrier.counts["nacks"] == 1
        assert session.up and session.room() == 2  # the bind goes on, its window whole
        await session.unbind()
        await running


async def test_a_link_that_does_not_answer_enquire_link_is_dropped(caplog):
    async with _carrier({"smpp": {"answer_enquire_link": False}}) as (carrier, port):
        session, running = await _open(port, enquire=0.05, response=0.2)
        await asyncio.wait_for(running, 5)  # the session ends by itself
        assert not session.up and carrier.counts["enquire_links_unanswered"] == 1
        assert "smpp enquire_link unanswered" in caplog.messages
        with pytest.raises(SessionLost):
            await _submit(session)


async def test_the_carrier_unbinding_ends_the_session_answered(caplog):
    caplog.set_level(logging.INFO)
    async with _carrier({"smpp": {"unbind_after": 1}}) as (carrier, port):
        session, running = await _open(port)
        assert await _submit(session) == 0
        await asyncio.wait_for(running, 5)  # unbind answered with unbind_resp, then the session ended
        assert carrier.counts["unbinds_sent"] == carrier.counts["unbind_resps"] == 1
        assert not session.up and "smpp unbound by the carrier" in caplog.messages
        assert "smpp session lost" not in caplog.messages
        with pytest.raises(SessionLost):
            await _submit(session)


async def test_a_place_stays_taken_until_the_carrier_answers_even_when_its_sender_gave_up():
    async with _carrier({"smpp": {"slow_every": 1, "slow_ms": 300}}) as (carrier, port):
        session, running = await _open(port, window=2)
        session.take_place()
        sender = asyncio.create_task(session.submit(_submit_sm()))
        await asyncio.sleep(0)  # its submit_sm is on its way
        sender.cancel()
        assert session.room() == 1  # still in the carrier's window
        await asyncio.wait_for(session.emptied.wait(), 5)  # the answer came (and was dropped)
        assert session.room() == 2 and session.up
        await session.unbind()
        await running


async def test_an_answer_that_does_not_come_in_time_ends_the_bind_and_its_window(caplog):
    # the carrier answers its second submit_sm 3 s late; its window is the gateway's
    async with _carrier({"smpp": {"slow_every": 2, "slow_ms": 3000, "window": 2}}) as (carrier, port):
        session, running = await _open(port, window=2, response=0.3)
        assert await _submit(session) == 0
        with pytest.raises(TimeoutError):
            await _submit(session)
        # the carrier may still hold that submit_sm: its place is not freed for another on this bind
        assert not session.up and session.room() == 0 and "smpp response timeout" in caplog.messages
        await asyncio.wait_for(running, 5)
        with pytest.raises(SessionLost):
            await _submit(session)
        assert carrier.counts["window_refused"] == 0


async def test_a_receipt_aiosmpplib_cannot_read_is_kept_all_the_same():
    delivered: list[smpp_text.Delivered] = []

    async def keep(message: smpp_text.Delivered) -> int:
        delivered.append(message)
        return 0

    async with _carrier({}) as (carrier, port):
        session, running = await _open(port, on_deliver=keep)
        (bind,) = carrier.binds["fairlane"]
        text = "id:r-1 sub:001 dlvrd:000 submit date:2611301200 done date:2611301201 stat:UNDELIV err:005 text:caf"
        receipt = DeliverSm(
            short_message=text,
            source=PhoneNumber("15550000002"),
            destination=PhoneNumber("15550000001"),
            esm_class=0x04,
            sequence_num=9,
        )
        pdu = receipt.pdu()
        start = pdu.index(text.encode())
        # a Latin-1 byte in GSM-7 text (the sm_length and command_length grow by one)
        pdu = pdu[: start - 1] + bytes([len(text) + 1]) + text.encode() + b"\xe9" + pdu[start + len(text) :]
        pdu = (len(pdu)).to_bytes(4, "big") + pdu[4:]
        answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        bind.answers[9] = answer
        bind.writer.write(pdu)
        assert await asyncio.wait_for(answer, 5) == 0  # ESME_ROK: kept, not refused
        assert smpp_text.receipt(delivered[0]) == smpp_text.Receipt("r-1", "undelivered", "UNDELIV:005")
        await session.unbind()
        await running


# --- the gateway's binds and sends (with the database) ------------------------------------------------------

TIMEOUT = 5.0


def _configure(conn, port: int, *, window: int = 10) -> None:
    gateway = {"name": "smsc", "kind": "smpp", "host": "127.0.0.1", "port": port, "system_id": "fairlane"}
    gateway.update(password="secret", binds=1, window=window, timeout_seconds=TIMEOUT, message_id_tlv=MESSAGE_ID_TAG)
    apply_config(conn, {"gateways": [gateway]})


def _destination(port: int) -> Destination:
    return Destination(1, "X", 1000.0, 100, "smsc", "smpp", f"smpp://127.0.0.1:{port}", TIMEOUT, 100, 0.05)


def _claimed(message_id: int, body: str = "hello") -> Claimed:
    until = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    segments = len(smpp_text.parts(body, message_id))
    return Claimed(message_id, 1, "t", "X", "+15550000001", "+15550000002", body, segments, until, 0)


async def test_a_bind_still_opening_ends_at_once_when_its_slot_goes(conn, dsn):
    connected, closed = asyncio.Event(), asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A carrier that takes the connection and never answers the bind."""
        connected.set()
        await reader.read()
        closed.set()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    _configure(conn, server.sockets[0].getsockname()[1])
    pool = await db_pool.create(dsn, min_size=1, max_size=2)
    binds = Binds(dsn, pool, "smsc", response_seconds=60)  # a bind may take a minute to answer
    try:
        binds.start()
        await asyncio.wait_for(connected.wait(), 10)
        # the lock connection dies (and its slots): the bind still opening ends now
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND classid = 1397575746"
        )
        await asyncio.wait_for(closed.wait(), 5)
        connected.clear()
        closed.clear()
        await asyncio.wait_for(connected.wait(), 10)  # a new lock connection, the slot again, a new bind
        await asyncio.wait_for(binds.close(), 5)  # SIGTERM: no wait for the bind's answer
        assert closed.is_set()
    finally:
        await binds.close()
        await pool.close()
        server.close()


async def test_a_retry_sends_only_the_parts_the_carrier_did_not_take(conn, dsn):
    async with _carrier({"smpp": {"nack_every": 2}}) as (carrier, port):  # every second submit_sm: generic_nack
        _configure(conn, port)
        pool = await db_pool.create(dsn, min_size=1, max_size=4)
        gateway = SmppGateway(_destination(port))
        try:
            assert await gateway.start(dsn, pool, lambda: True)
            message = _claimed(77, "0123456789" * 40)  # three parts
            answers = [await gateway.send(message, math.inf) for _ in range(3)]
        finally:
            await gateway.close()
            await pool.close()
    assert [(a.outcome, a.error_code) for a in answers] == [
        ("retry", "ESME_RX_T_APPN"),  # part 1 taken, part 2 nacked
        ("retry", "ESME_RX_T_APPN"),  # part 2 taken, part 3 nacked
        ("sent", None),  # part 3 taken
    ]
    received = sorted(carrier.simulator.received, key=lambda m: m["part"])
    assert [(m["id"], m["part"], m["parts"]) for m in received] == [("77", n, 3) for n in (1, 2, 3)]  # each once
    kept = conn.execute("SELECT provider_id FROM fairlane.message_parts WHERE message_id = 77 ORDER BY part")
    assert [k[0] for k in kept] == [m["provider_id"] for m in received]
    assert answers[2].provider_id == received[0]["provider_id"]  # the first part's, from the first attempt


async def test_no_window_room_within_the_send_slot_sends_the_message_back_and_places_go_in_order(conn, dsn):
    async with _carrier({"latency_ms": [300, 300]}) as (carrier, port):  # each submit_sm answered in 300 ms
        _configure(conn, port, window=1)
        pool = await db_pool.create(dsn, min_size=1, max_size=4)
        gateway = SmppGateway(_destination(port))
        try:
            assert await gateway.start(dsn, pool, lambda: True)
            first = asyncio.create_task(gateway.send(_claimed(1), math.inf))  # takes the one place
            late = asyncio.create_task(gateway.send(_claimed(2), time.monotonic() + 0.05))  # a slot of 50 ms
            waiting = [asyncio.create_task(gateway.send(_claimed(n), math.inf)) for n in (3, 4, 5)]
            answers = await asyncio.gather(first, late, *waiting)
        finally:
            await gateway.close()
            await pool.close()
    assert [a.outcome for a in answers] == ["sent", "release", "sent", "sent", "sent"]  # released: no attempt
    assert [m["id"] for m in carrier.simulator.received] == ["1", "3", "4", "5"]  # in order of arrival


def test_the_password_is_in_no_repr():
    settings = SmppSettings.read({"host": "h", "port": 2775, "system_id": "x", "password": "topsecret"}, 2.0)
    assert "topsecret" not in repr(settings) and settings.session.password == "topsecret"
    assert "topsecret" not in repr(db_smpp.SmppGateway(1, {"password": "topsecret"}))
    assert settings.message_id_tag is None  # no vendor TLV unless the gateway says which
