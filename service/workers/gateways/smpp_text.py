"""What an SMPP gateway puts in its PDUs and reads from them, without I/O (docs/decisions/0016): a message
body as its submit_sm parts (GSM-7 or UCS-2, concatenated with UDH or sar_* TLVs), the fate of a submit_sm by
its command status, and delivery receipts. The PDU codec is aiosmpplib's; this module only chooses the
fields (and reads a deliver_sm aiosmpplib refuses as far as its receipt goes).

A body is GSM-7 (data_coding 0, one septet per octet, the extension characters as ESC + code) when the GSM
03.38 codec can encode it, else UCS-2 (data_coding 8, UTF-16 big-endian). One part holds 160 septets / 70
UTF-16 code units; a longer body is split into parts of at most 153 / 67 (a 6-octet UDH each), never inside a
character: an escape pair or a surrogate pair that would straddle a boundary starts the next part. That is
how `fairlane.segments_v2` counts, so the parts the carrier receives are the segments the quota charged."""

import datetime as dt
import re
import struct
from dataclasses import dataclass

from aiosmpplib import DeliverSm, OptionalParam, PhoneNumber, SmppCommandStatus, SubmitSm
from aiosmpplib.codec import ESCAPE, find_codec_info
from aiosmpplib.state import (
    MESSAGE_PAYLOAD,
    MESSAGE_STATE,
    RECEIPTED_MESSAGE_ID,
    SAR_MSG_REF_NUM,
    SAR_SEGMENT_SEQNUM,
    SAR_TOTAL_SEGMENTS,
)

GSM7, UCS2 = "gsm0338", "ucs2"
UDHI = 0x40
"""esm_class bit: short_message starts with a user data header."""
THROTTLED = SmppCommandStatus.ESME_RTHROTTLED
TRANSIENT = {SmppCommandStatus.ESME_RMSGQFUL, SmppCommandStatus.ESME_RX_T_APPN}
"""Command statuses worth another attempt later (besides throttling)."""


@dataclass(frozen=True)
class Part:
    """One submit_sm's worth of a message: its short_message octets (with the UDH when there is one), its
    esm_class bits and TLVs."""

    short_message: bytes
    encoding: str
    esm_class: int
    optional_params: list[OptionalParam]


def encode(body: str) -> tuple[bytes, str]:
    """The body's octets and encoding: GSM-7 (one septet per octet) when it can be, else UCS-2."""
    try:
        return find_codec_info(GSM7, None).encode(body, "strict")[0], GSM7
    except UnicodeEncodeError:
        return find_codec_info(UCS2, None).encode(body, "strict")[0], UCS2


def _chunks(octets: bytes, encoding: str) -> list[bytes]:
    """The body's octets split into parts: 160 septets / 70 code units in one, else at most 153 / 67 per
    part, a part ending one unit short rather than between an escape and its code or between the halves of a
    surrogate pair (`fairlane.segments_v2` counts the same parts)."""
    unit = 1 if encoding == GSM7 else 2
    single, split = (160, 153) if encoding == GSM7 else (70, 67)
    if len(octets) <= single * unit:
        return [octets]
    chunks, start = [], 0
    while start < len(octets):
        end = min(start + split * unit, len(octets))
        if end < len(octets):
            if encoding == GSM7 and octets[end - 1] == ESCAPE:
                end -= 1  # an extension character's escape stays with its code
            elif encoding == UCS2 and 0xD8 <= octets[end - 2] <= 0xDB:
                end -= 2  # a high surrogate stays with its low one
        chunks.append(octets[start:end])
        start = end
    return chunks


def parts(body: str, message_id: int, concatenation: str = "udh", message_id_tag: int | None = None) -> list[Part]:
    """The submit_sm parts of a body; a long body's parts share a reference (the low 8 bits of the message id
    in a UDH, 16 in sar_msg_ref_num: the same on every attempt, so parts of different attempts join). With
    `message_id_tag`, each carries the message id in that vendor-specific TLV (0x1400-0x3FFF; receivers
    ignore what they do not know): an idempotency key for a carrier that reads it (the simulator's 0x1410)."""
    octets, encoding = encode(body)
    chunks = _chunks(octets, encoding)
    tagged = [OptionalParam(message_id_tag, str(message_id))] if message_id_tag is not None else []
    if len(chunks) == 1:
        return [Part(chunks[0], encoding, 0, tagged)]
    if concatenation == "sar":
        reference = message_id & 0xFFFF
        return [
            Part(
                chunk,
                encoding,
                0,
                [
                    *tagged,
                    OptionalParam(SAR_MSG_REF_NUM, reference),
                    OptionalParam(SAR_TOTAL_SEGMENTS, len(chunks)),
                    OptionalParam(SAR_SEGMENT_SEQNUM, number),
                ],
            )
            for number, chunk in enumerate(chunks, start=1)
        ]
    reference = message_id & 0xFF
    return [
        Part(bytes((0x05, 0x00, 0x03, reference, len(chunks), number)) + chunk, encoding, UDHI, tagged)
        for number, chunk in enumerate(chunks, start=1)
    ]


def submit_sm(
    part: Part, body: str, source: PhoneNumber, destination: PhoneNumber, until: dt.datetime | None
) -> SubmitSm:
    """The submit_sm of one part (a receipt asked for, valid until `until`); its sequence number is set when
    it is sent."""
    submit = SubmitSm(
        short_message=body,  # replaced by the part's octets
        source=source,
        destination=destination,
        esm_class=part.esm_class,
        registered_delivery=1,
        validity_period=until,
        encoding=None if part.encoding == GSM7 else part.encoding,
        optional_params=list(part.optional_params),
        auto_message_payload=False,
    )
    submit.set_encoded_message(part.short_message)
    return submit


def status_name(status: int) -> str:
    """ESME_RTHROTTLED, ...; a status the library does not name as 0x00000400."""
    try:
        return str(SmppCommandStatus(status).name)
    except ValueError:
        return f"0x{status:08X}"


def outcome(status: int) -> str:
    """What a submit_sm_resp's command status means for the part: sent, throttled, retry or failed."""
    if status == SmppCommandStatus.ESME_ROK:
        return "sent"
    if status == THROTTLED:
        return "throttled"
    return "retry" if status in TRANSIENT else "failed"


# --- delivery receipts (SMPP 3.4 appendix B text, and the receipted_message_id / message_state TLVs) -----

FINAL_STATES = {
    "DELIVRD": "delivered",
    "UNDELIV": "undelivered",
    "EXPIRED": "undelivered",
    "DELETED": "undelivered",
    "REJECTD": "undelivered",
}
MESSAGE_STATES = {2: "DELIVRD", 3: "EXPIRED", 4: "DELETED", 5: "UNDELIV", 8: "REJECTD", 1: "ENROUTE", 6: "ACCEPTD"}
_FIELD = re.compile(r"\b(id|stat|err):(\S*)", re.IGNORECASE)
_TEXT = re.compile(r"\btext:", re.IGNORECASE)
"""The receipt's last field: the start of the message's own text, which may say anything (`id:999`)."""


@dataclass(frozen=True)
class Delivered:
    """What a deliver_sm says, as far as the gateway reads it."""

    esm_class: int
    text: str
    tlvs: dict[int, object]


@dataclass(frozen=True)
class Receipt:
    provider_id: str
    status: str | None
    """delivered, undelivered, or None for a state on the way (ENROUTE, ACCEPTD, UNKNOWN)."""
    error_code: str | None
    """For an undelivered part: the carrier's stat, with its err when not zero (UNDELIV:005)."""


def delivered(deliver_sm: DeliverSm) -> Delivered:
    return Delivered(
        deliver_sm.esm_class,
        deliver_sm.short_message or deliver_sm.message_payload or "",
        {param.tag: param.value for param in deliver_sm.optional_params or []},
    )


def read_leniently(pdu: bytes) -> Delivered | None:
    """A deliver_sm aiosmpplib refused (text not in its data_coding, a data_coding it does not know, an
    address longer than allowed), read only as far as a receipt goes: esm_class, the text decoded with
    replacement characters, the TLVs (message_state as a number, the others as text). None when even that
    cannot be read."""
    try:
        index = _after_c_string(pdu, 16)  # service_type
        index = _after_c_string(pdu, index + 2)  # source_addr_ton, source_addr_npi, source_addr
        index = _after_c_string(pdu, index + 2)  # dest_addr_ton, dest_addr_npi, destination_addr
        esm_class = pdu[index]
        index = _after_c_string(pdu, index + 3)  # esm_class, protocol_id, priority_flag, schedule_delivery_time
        index = _after_c_string(pdu, index)  # validity_period
        data_coding, length = pdu[index + 2], pdu[index + 4]
        index += 5  # registered_delivery, replace_if_present_flag, data_coding, sm_default_msg_id, sm_length
        raw, index = pdu[index : index + length], index + length
        tlvs: dict[int, object] = {}
        while index + 4 <= len(pdu):
            tag, size = struct.unpack_from("!HH", pdu, index)
            value, index = pdu[index + 4 : index + 4 + size], index + 4 + size
            if tag == MESSAGE_PAYLOAD:
                raw = value
            tlvs[tag] = int.from_bytes(value, "big") if tag == MESSAGE_STATE else value.rstrip(b"\0").decode("latin-1")
    except (ValueError, IndexError, struct.error):
        return None
    if data_coding == 8:
        text = raw.decode("utf-16-be", errors="replace")
    elif data_coding == 0:
        text = find_codec_info(GSM7, None).decode(raw, "replace")[0]
    else:
        text = raw.decode("latin-1")
    return Delivered(esm_class, text, tlvs)


def _after_c_string(pdu: bytes, index: int) -> int:
    return pdu.index(b"\0", index) + 1


def is_receipt(deliver_sm: Delivered) -> bool:
    """A delivery receipt (esm_class message type 1), not a message from a handset."""
    return (deliver_sm.esm_class >> 2) & 0x0F == 1


def receipt(deliver_sm: Delivered) -> Receipt | None:
    """The receipt a deliver_sm carries, the TLVs before the text (whose fields before `text:` count, the
    first of each); None when it names no id."""
    fields: dict[str, str] = {}
    for name, value in _FIELD.findall(_TEXT.split(deliver_sm.text, maxsplit=1)[0]):
        fields.setdefault(name.lower(), value)
    tlvs = deliver_sm.tlvs
    provider_id = str(tlvs.get(RECEIPTED_MESSAGE_ID) or fields.get("id") or "")
    if not provider_id:
        return None
    state = tlvs.get(MESSAGE_STATE)
    stat = MESSAGE_STATES.get(state, "UNKNOWN") if isinstance(state, int) else fields.get("stat", "").upper()
    status = FINAL_STATES.get(stat)
    error = fields.get("err", "")
    error_code = None
    if status == "undelivered":
        error_code = f"{stat}:{error}" if error.strip("0") else stat
    return Receipt(provider_id, status, error_code)
