"""The SQL side of the smpp gateway (docs/decisions/0016): its configuration, the parts of messages sent with
the carrier's id of each, per-part delivery receipts in any order, and their pruning; what goes in the PDUs
and is read from them: the parts against `segments_v2`, receipts."""

import random
import struct

import pytest
from aiosmpplib import DeliverSm, OptionalParam, PhoneNumber, SubmitSm
from aiosmpplib.codec import GSM_BASIC_ENCODE_MAP, GSM_EXTENDED_ENCODE_MAP
from aiosmpplib.state import MESSAGE_STATE, RECEIPTED_MESSAGE_ID

from db import admin, configuration
from service.workers.gateways import smpp_text
from service.workers.gateways.smpp_session import HEADER, pdu_header
from tests.integration.claiming import backlog, setup
from tests.integration.fixtures import apply_config

SMPP_GATEWAY = {
    "name": "smsc",
    "kind": "smpp",
    "host": "127.0.0.1",
    "port": 2775,
    "system_id": "fairlane",
    "password": "s3cret",
    "binds": 2,
}


@pytest.fixture
def sent(conn):
    """Three messages of an smpp gateway's destination claimed and completed as sent; (gateway id, ids)."""
    tenants = [("t", "s", 1, [("+15550000001", None)])]
    destination = setup(conn, rate=1000, burst=1000, tenant_sets=[("s", 1)], tenants=tenants)
    apply_config(conn, {"gateways": [SMPP_GATEWAY]})
    conn.execute("UPDATE fairlane.destinations SET gateway_id = (SELECT id FROM fairlane.gateways WHERE name = 'smsc')")
    backlog(conn, "t", "+15550000001", 3)
    rows = conn.execute("SELECT message_id, claim_id FROM fairlane.claim_v2(%s, 3, 30)", (destination,)).fetchall()
    gateway_id = conn.execute("SELECT id FROM fairlane.gateways WHERE name = 'smsc'").fetchone()[0]
    return gateway_id, rows


def _complete(conn, rows, provider_ids):
    conn.execute(
        "SELECT fairlane.complete_v1(%s, %s, %s, %s, %s, %s, %s, 5)",
        (rows[0][1], [r[0] for r in rows], ["sent"] * len(rows), provider_ids, [None] * len(rows),
         [None] * len(rows), [None] * len(rows)),
    )  # fmt: skip


def _record(conn, gateway_id, parts):
    """parts: (message id, part, of parts, provider id)."""
    return conn.execute(
        "SELECT fairlane.record_parts_v1(%s, %s, %s, %s, %s)",
        (gateway_id, [p[0] for p in parts], [p[1] for p in parts], [p[2] for p in parts], [p[3] for p in parts]),
    ).fetchone()[0]


def _receipt(conn, gateway_id, provider_id, status="delivered", error_code=None):
    return conn.execute(
        "SELECT fairlane.part_receipt_v1(%s, %s, %s, %s)", (gateway_id, provider_id, status, error_code)
    ).fetchone()[0]


def _message(conn, message_id):
    return conn.execute(
        "SELECT status, error_code, provider_id FROM fairlane.messages WHERE id = %s", (message_id,)
    ).fetchone()


def _receipt_events(conn, message_id):
    return conn.execute(
        "SELECT count(*) FROM fairlane.message_events WHERE message_id = %s AND status IN ('delivered', 'undelivered')",
        (message_id,),
    ).fetchone()[0]


def test_a_message_is_delivered_once_every_part_is(conn, sent):
    gateway_id, rows = sent
    (one, _), (two, _), (three, _) = rows
    _record(conn, gateway_id, [(one, 1, 1, "a1"), (two, 1, 3, "b1"), (two, 2, 3, "b2"), (two, 3, 3, "b3")])
    _record(conn, gateway_id, [(three, 1, 2, "c1"), (three, 2, 2, "c2")])
    _complete(conn, rows, ["a1", "b1", "c1"])
    assert _receipt(conn, gateway_id, "a1") == "settled"
    assert _message(conn, one) == ("delivered", None, "a1")
    assert [_receipt(conn, gateway_id, p) for p in ("b1", "b3")] == ["partial", "partial"]
    assert _message(conn, two)[0] == "sent"  # a part's receipt is still missing
    assert _receipt(conn, gateway_id, "b2") == "settled"
    assert _message(conn, two) == ("delivered", None, "b1")
    # one part undelivered: the message is undelivered with that part's code
    assert _receipt(conn, gateway_id, "c2", "undelivered", "UNDELIV:005") == "partial"
    assert _receipt(conn, gateway_id, "c1") == "settled"
    assert _message(conn, three) == ("undelivered", "UNDELIV:005", "c1")
    # repeated receipts change nothing
    assert _receipt(conn, gateway_id, "b2", "undelivered", "X") == "duplicate"
    assert [_receipt_events(conn, m) for m in (one, two, three)] == [1, 1, 1]
    parts = conn.execute("SELECT provider_id, part, parts, status, receipts FROM fairlane.message_parts "
                         "WHERE message_id = %s ORDER BY part", (two,)).fetchall()  # fmt: skip
    assert parts == [("b1", 1, 3, "delivered", 1), ("b2", 2, 3, "delivered", 2), ("b3", 3, 3, "delivered", 1)]


def test_receipts_before_their_parts_and_before_the_completion(conn, sent):
    gateway_id, rows = sent
    (one, _), (two, _), _ = rows
    # a receipt for an id no part has yet is kept; the part's row matches it later
    assert _receipt(conn, gateway_id, "a1") == "unknown"
    assert _receipt(conn, gateway_id, "b1", "undelivered", "EXPIRED") == "unknown"
    assert _record(conn, gateway_id, [(one, 1, 1, "a1"), (two, 1, 1, "b1")]) == 0  # both still live: waiting
    assert _message(conn, one)[0] == "sending"
    waiting = conn.execute("SELECT count(*) FROM fairlane.message_parts WHERE waiting").fetchone()[0]
    assert waiting == 2
    _complete(conn, rows[:2], ["a1", "b1"])
    assert conn.execute("SELECT fairlane.settle_waiting_parts_v1()").fetchone()[0] == 2
    assert _message(conn, one)[0] == "delivered"
    assert _message(conn, two)[:2] == ("undelivered", "EXPIRED")
    assert conn.execute("SELECT count(*) FROM fairlane.message_parts WHERE waiting").fetchone()[0] == 0
    # an id nobody ever gave stays unknown (and goes with the retention)
    assert _receipt(conn, gateway_id, "nobody") == "unknown"
    assert conn.execute("SELECT message_id FROM fairlane.message_parts WHERE provider_id = 'nobody'").fetchone() == (
        None,
    )


def test_parts_older_than_the_retention_are_pruned(conn, sent):
    gateway_id, rows = sent
    _record(conn, gateway_id, [(rows[0][0], 1, 1, "old"), (rows[1][0], 1, 1, "new")])
    conn.execute("UPDATE fairlane.settings SET retention_seconds = 3600")
    conn.execute("UPDATE fairlane.message_parts SET created_at = now() - interval '2 hours' WHERE provider_id = 'old'")
    assert conn.execute("SELECT fairlane.prune_message_parts_v1()").fetchone()[0] == 1
    assert [r[0] for r in conn.execute("SELECT provider_id FROM fairlane.message_parts")] == ["new"]


def test_an_smpp_gateway_is_configured_and_its_password_never_shown(conn):
    result = apply_config(conn, {"gateways": [SMPP_GATEWAY]})
    assert result.changes == ["created gateway smsc"]
    entity = admin.gateway(conn, "smsc")
    assert entity["url"] == "smpp://127.0.0.1:2775"
    settings = (entity["binds"], entity["window"], entity["concatenation"], entity["dest_ton_npi"])
    assert settings == (2, 10, "udh", [1, 1])
    assert "password" not in entity and "s3cret" not in str(entity)
    assert configuration.smpp_gateway(conn, "smsc")["password"] == "s3cret"
    assert apply_config(conn, {"gateways": [SMPP_GATEWAY]}).changes == []  # idempotent
    changed = apply_config(conn, {"gateways": [{**SMPP_GATEWAY, "password": "other", "window": 20}]}).changes
    assert changed == ["updated gateway smsc: smpp.password changed, smpp.window 10 -> 20"]


def test_a_part_sent_again_counts_by_its_latest_send(conn, sent):
    gateway_id, rows = sent
    one = rows[0][0]
    _record(conn, gateway_id, [(one, 1, 2, "x1"), (one, 2, 2, "x2")])
    assert _receipt(conn, gateway_id, "x1") == "partial"
    conn.execute("UPDATE fairlane.message_parts SET created_at = created_at - interval '1 minute'")
    # part 1 went again (a crash before its first send was completed): that send's receipt is the one that counts
    _record(conn, gateway_id, [(one, 1, 2, "y1")])
    _complete(conn, rows[:1], ["y1"])
    assert _receipt(conn, gateway_id, "x2") == "partial"  # not settled by the stale receipt of x1
    assert _receipt(conn, gateway_id, "y1", "undelivered", "UNDELIV:001") == "settled"
    assert _message(conn, one) == ("undelivered", "UNDELIV:001", "y1")


def test_an_id_the_carrier_gives_again_starts_afresh(conn, sent):
    gateway_id, rows = sent
    (one, _), (two, _), _ = rows
    _record(conn, gateway_id, [(one, 1, 1, "r")])
    _complete(conn, rows[:2], ["r", "r"])
    assert _receipt(conn, gateway_id, "r") == "settled"
    _record(conn, gateway_id, [(two, 1, 1, "r")])  # the carrier reused the id for another message's part
    kept = conn.execute("SELECT message_id, status, receipts FROM fairlane.message_parts WHERE provider_id = 'r'")
    assert kept.fetchall() == [(two, None, 0)]
    assert _receipt(conn, gateway_id, "r", "undelivered", "REJECTD") == "settled"  # not a duplicate
    assert _message(conn, two)[:2] == ("undelivered", "REJECTD")
    assert _message(conn, one)[0] == "delivered"


def test_pruning_keeps_up_with_more_than_one_statement_of_parts(conn, sent):
    gateway_id, _ = sent
    conn.execute("UPDATE fairlane.settings SET retention_seconds = 3600")
    conn.execute(
        "INSERT INTO fairlane.message_parts (gateway_id, provider_id, created_at) "
        "SELECT %s, 'old-' || g, now() - interval '2 hours' FROM generate_series(1, 25000) g",
        (gateway_id,),
    )
    _record(conn, gateway_id, [(sent[1][0][0], 1, 1, "new")])
    assert conn.execute("SELECT fairlane.prune_message_parts_v1()").fetchone()[0] == 25000
    assert [r[0] for r in conn.execute("SELECT provider_id FROM fairlane.message_parts")] == ["new"]


def test_parts_locks_are_one_per_message_id(conn):
    ids = [1, 2**32, 5, 5 + 2**31, 2**40 + 7]  # hashint8 gives 1 and 2**32 one hash; others share low bits
    with conn.transaction():
        conn.execute("SELECT fairlane.lock_message_parts_v1(%s)", (ids,))
        keys = conn.execute(
            "SELECT classid::bigint, objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        ).fetchall()
    assert len(set(keys)) == len(ids)


# --- what the gateway puts in its PDUs ----------------------------------------------------------------------

EDGES = [
    "a" * 160, "a" * 161, "a" * 306, "a" * 307, "a" * 1600,
    "a" * 152 + "€" + "a" * 152,  # the escape would end part 1: the euro starts part 2, a third part follows
    "a" * 152 + "{" + "b" * 160, "a" * 151 + "€€" + "a" * 200, "a" * 305 + "€" + "a", "a" * 304 + "€" * 3,
    "a" * 158 + "€", "a" * 159 + "€", "€" * 80, "€" * 81, "€" * 153, "\f" * 81, "a" * 152 + "€" * 200,
    "".join(GSM_BASIC_ENCODE_MAP) * 3 + "".join(GSM_EXTENDED_ENCODE_MAP) * 7,
    "✓" * 70, "✓" * 71, "✓" * 134, "✓" * 135, "ł" * 1600, "😀" * 33 + "a", "😀" * 34, "😀" * 35, "😀" * 36,
    "😀" * 100,  # a surrogate pair would straddle each boundary: 4 parts, not 3
    "a" * 66 + "😀" + "a" * 70, "ł" * 65 + "😀" * 40, "😀a" * 80, "\x01" * 66 + "😀" * 10, "é€😀[" * 40,
]  # fmt: skip


def _bodies():
    """The edge cases, then seeded random bodies of characters that take one and two units."""
    draw = random.Random(14)
    gsm = "abc {}€[~^|\\"
    ucs2 = "aé€ł✓😀🚀\x01"
    randoms = ["".join(draw.choice(alphabet) for _ in range(draw.randint(140, 700))) for alphabet in (gsm, ucs2)
               for _ in range(150)]  # fmt: skip
    return EDGES + randoms


@pytest.mark.parametrize("concatenation", ["udh", "sar"])
def test_parts_keep_characters_whole_and_are_the_segments_charged(conn, concatenation):
    bodies = _bodies()
    counted = conn.execute(
        "SELECT fairlane.segments_v2(b), fairlane.segments_v1(b), fairlane.is_gsm7_v1(b) FROM unnest(%s::text[]) b",
        (bodies,),
    ).fetchall()
    grown = 0
    for body, (segments, segments_v1, gsm7) in zip(bodies, counted, strict=True):
        parts = smpp_text.parts(body, 7, concatenation, 0x1410)
        assert len(parts) == segments, body
        grown += segments > segments_v1
        encoding = smpp_text.GSM7 if gsm7 else smpp_text.UCS2
        assert {p.encoding for p in parts} == {encoding}, body
        texts = []
        for number, part in enumerate(parts, start=1):
            # the PDU as the carrier reads it (aiosmpplib, strict): every part decodes on its own
            pdu = smpp_text.submit_sm(part, body, PhoneNumber("15550000001"), PhoneNumber("15550000002"), None).pdu()
            decoded = SubmitSm.from_pdu(pdu, pdu_header(HEADER.unpack(pdu[:16])), smpp_text.GSM7)
            params = {p.tag: p.value for p in decoded.optional_params}
            assert params[0x1410] == "7"
            if len(parts) > 1:
                assert (params[0x020E], params[0x020F]) == (len(parts), number)  # total, sequence (UDH or sar)
            octets = len(part.short_message) - (6 if part.esm_class & smpp_text.UDHI else 0)
            most = (153 if len(parts) > 1 else 160) if gsm7 else 2 * (67 if len(parts) > 1 else 70)
            assert octets <= most, body
            texts.append(decoded.short_message)
        assert "".join(texts) == body
    assert grown >= 5  # the cases where whole characters cost a part more than segments_v1 counted


def test_the_reviewers_cases_cost_a_part_more_than_segments_v1(conn):
    for body, v1, v2 in [("a" * 152 + "€" + "a" * 152, 2, 3), ("😀" * 100, 3, 4)]:
        assert conn.execute("SELECT fairlane.segments_v1(%s), fairlane.segments_v2(%s)", (body, body)).fetchone() == (
            v1,
            v2,
        )
        assert len(smpp_text.parts(body, 1)) == v2


# --- what the gateway reads from a deliver_sm -----------------------------------------------------------------

RECEIPT = "id:{id} sub:001 dlvrd:001 submit date:2611301200 done date:2611301201 stat:{stat} err:{err} text:{text}"


def test_a_receipts_own_text_never_overrides_its_id_or_stat():
    text = RECEIPT.format(id="abc", stat="DELIVRD", err="000", text="id:999 stat:UNDELIV err:042")
    assert smpp_text.receipt(smpp_text.Delivered(0x04, text, {})) == smpp_text.Receipt("abc", "delivered", None)
    text = RECEIPT.format(id="abc", stat="UNDELIV", err="005", text="Stat:DELIVRD")
    assert smpp_text.receipt(smpp_text.Delivered(0x04, text, {})) == smpp_text.Receipt(
        "abc", "undelivered", "UNDELIV:005"
    )
    # the TLVs first: receipted_message_id and message_state
    tlvs = {RECEIPTED_MESSAGE_ID: "tlv-id", MESSAGE_STATE: 5}
    assert smpp_text.receipt(smpp_text.Delivered(0x04, text, tlvs)).provider_id == "tlv-id"


def _deliver_sm(text: str, tlvs=True) -> bytes:
    """A receipt's deliver_sm as aiosmpplib writes it (data_coding 0)."""
    params = [OptionalParam(RECEIPTED_MESSAGE_ID, "r-1"), OptionalParam(MESSAGE_STATE, 5)] if tlvs else []
    message = DeliverSm(
        short_message=text,
        source=PhoneNumber("15550000001"),
        destination=PhoneNumber("15550000002"),
        esm_class=0x04,
        registered_delivery=0,
        optional_params=params,
        sequence_num=9,
    )
    return message.pdu()


def _refused(pdu: bytes) -> bool:
    try:
        DeliverSm.from_pdu(pdu, pdu_header(HEADER.unpack(pdu[:16])), smpp_text.GSM7)
    except Exception:
        return True
    return False


def _with_text(pdu: bytes, text: bytes, new: bytes) -> bytes:
    """The PDU with its short_message `text` replaced by `new` (sm_length and command_length follow)."""
    start = pdu.index(text)
    changed = pdu[: start - 1] + bytes([len(new)]) + new + pdu[start + len(text) :]
    return struct.pack("!I", len(changed)) + changed[4:]


def test_a_deliver_sm_aiosmpplib_refuses_is_read_leniently():
    text = RECEIPT.format(id="r-1", stat="UNDELIV", err="005", text="caf")
    plain = _deliver_sm(text, tlvs=False)
    data_coding = plain.index(text.encode()) - 3  # data_coding, sm_default_msg_id, sm_length, short_message
    long_address = _deliver_sm(text).replace(b"15550000001", b"1" * 30)
    cases = {
        "a Latin-1 byte in GSM-7 text": _with_text(plain, text.encode(), text.encode() + b"\xe9"),
        "a data_coding aiosmpplib does not know (a message class)": plain[:data_coding]
        + b"\xf1"
        + plain[data_coding + 1 :],
        "a source address longer than 21 digits": struct.pack("!I", len(long_address)) + long_address[4:],
    }
    for name, pdu in cases.items():
        assert _refused(pdu), name
        delivered = smpp_text.read_leniently(pdu)
        assert delivered is not None and smpp_text.is_receipt(delivered), name
        assert smpp_text.receipt(delivered) == smpp_text.Receipt("r-1", "undelivered", "UNDELIV:005"), name
    assert smpp_text.read_leniently(plain[:30]) is None  # not even a receipt's fields
