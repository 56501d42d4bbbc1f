"""PDUs on the wire: the hot path's four by our own code, every other one by smpplib.

Each MO costs four PDUs: its deliver_sm, our deliver_sm_resp, the reply's submit_sm
and the SMSC's submit_sm_resp. smpplib builds a PDU object field by field through
generic machinery, which cost as much CPU per MO as our whole event loop; these four
have fixed layouts (SMPP 3.4 sections 4.4 and 4.6) and are read and written here
directly. Their bytes are tested to be exactly what smpplib reads and writes. The
session's other PDUs (bind, enquire_link, unbind, generic_nack ...) go through smpplib.

Optional parameters (TLVs) of a deliver_sm are all kept, by tag: smpplib drops vendor
TLVs (we may need a vendor message id) and raises on a standard TLV its DeliverSM
class does not list; no TLV may kill a session.
"""

from __future__ import annotations

import contextlib
import re
import struct
from dataclasses import dataclass, field

from smpplib import command_codes, smpp

TLV_RECEIPTED_MESSAGE_ID = 0x001E
TLV_SAR_MSG_REF_NUM = 0x020C
TLV_SAR_TOTAL_SEGMENTS = 0x020E
TLV_SAR_SEGMENT_SEQNUM = 0x020F
TLV_NETWORK_ERROR_CODE = 0x0423
TLV_MESSAGE_PAYLOAD = 0x0424
TLV_MESSAGE_STATE = 0x0427

HEADER = struct.Struct(">LLLL")
_STATUS_SEQUENCE = struct.Struct(">LLL")  # command_id, command_status, sequence_number
SUBMIT_SM = 0x00000004
SUBMIT_SM_RESP = 0x80000004
DELIVER_SM = 0x00000005
DELIVER_SM_RESP = 0x80000005
DATA_SM = 0x00000103
DATA_SM_RESP = 0x80000103
RESPONSE_BIT = 0x80000000  # a response's command_id is its request's with this bit set

# message_state values (SMPP 3.4 section 5.3.2.35) as the names we record.
MESSAGE_STATES = {
    1: "enroute",
    2: "delivered",
    3: "expired",
    4: "deleted",
    5: "undeliverable",
    6: "accepted",
    7: "unknown",
    8: "rejected",
}
# The "stat:" words of the receipt text format (SMPP 3.4 appendix B).
RECEIPT_STATS = {
    "ENROUTE": "enroute",
    "DELIVRD": "delivered",
    "EXPIRED": "expired",
    "DELETED": "deleted",
    "UNDELIV": "undeliverable",
    "ACCEPTD": "accepted",
    "UNKNOWN": "unknown",
    "REJECTD": "rejected",
}
# Word boundary: "id:" must not match inside another field name.
_RECEIPT_FIELD = re.compile(rb"\b(id|stat|err):\s*(\S+)", re.IGNORECASE)


class PduParseError(Exception):
    """A PDU that could not be read; carries the header so it can still be answered."""

    def __init__(self, command_id: int, sequence: int, reason: str) -> None:
        super().__init__(reason)
        self.command_id = command_id
        self.sequence = sequence


@dataclass(frozen=True, slots=True)
class DeliverSm:
    """A deliver_sm as received: mandatory fields plus every TLV by tag."""

    sequence: int
    service_type: str
    source_addr_ton: int
    source_addr_npi: int
    source_addr: str
    dest_addr_ton: int
    destination_addr: str
    esm_class: int
    data_coding: int
    short_message: bytes
    tlvs: dict[int, bytes] = field(default_factory=dict)
    # How it is answered: deliver_sm_resp, or data_sm_resp for an MO sent as data_sm.
    response_id: int = DELIVER_SM_RESP

    def tlv_int(self, tag: int) -> int | None:
        value = self.tlvs.get(tag)
        return int.from_bytes(value, "big") if value else None

    def tlv_text(self, tag: int) -> str | None:
        value = self.tlvs.get(tag)
        if value is None:
            return None
        return value.split(b"\x00", 1)[0].decode("latin-1") or None


@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    """What an SMSC delivery receipt says about one submitted message."""

    message_id: str
    status: str
    error: str | None


def frame_length(buffer: bytes | bytearray, offset: int) -> int | None:
    """The command_length of the PDU starting at offset, or None if not all 4 octets are in."""
    if len(buffer) - offset < 4:
        return None
    length: int = struct.unpack_from(">L", buffer, offset)[0]
    return length


def _skip_cstring(raw: bytes, position: int) -> int:
    end = raw.index(b"\x00", position)
    return end + 1


def _cstring(raw: bytes, position: int) -> tuple[str, int]:
    """The C-octet string at `position` (Latin-1: addresses are digits) and where it ends."""
    end = raw.index(b"\x00", position)
    return raw[position:end].decode("latin-1"), end + 1


def parse_mo(raw: bytes) -> DeliverSm:
    """Read an MO: a deliver_sm (SMPP 3.4 section 4.6.1), or a data_sm (4.7.1), the other
    way an SMSC may deliver one: no short_message, the text in message_payload. Both
    come out in one shape, which knows its answer (deliver_sm_resp or data_sm_resp).
    Raises PduParseError when even the mandatory part is broken."""
    command_id, _status, sequence = _STATUS_SEQUENCE.unpack_from(raw, 4)
    try:
        service_type, position = _cstring(raw, 16)
        source_addr_ton, source_addr_npi = raw[position], raw[position + 1]
        source_addr, position = _cstring(raw, position + 2)
        dest_addr_ton = raw[position]
        destination_addr, position = _cstring(raw, position + 2)
        esm_class = raw[position]
        if command_id == DATA_SM:
            data_coding = raw[position + 2]  # after registered_delivery
            short_message = b""
            mandatory_end = position + 3
        else:
            position += 3  # esm_class, protocol_id, priority_flag
            position = _skip_cstring(raw, position)  # schedule_delivery_time
            position = _skip_cstring(raw, position)  # validity_period
            data_coding = raw[position + 2]
            position += 4  # registered_delivery, replace_if_present, data_coding, default id
            sm_length = raw[position]
            mandatory_end = position + 1 + sm_length
            if mandatory_end > len(raw):
                raise ValueError("short_message runs past the PDU")
            short_message = raw[position + 1 : mandatory_end]
        tlvs = parse_tlvs(raw, mandatory_end)
    except (ValueError, IndexError, struct.error) as exc:
        name = "data_sm" if command_id == DATA_SM else "deliver_sm"
        raise PduParseError(command_id, sequence, f"unreadable {name}: {exc}") from exc
    return DeliverSm(
        sequence=sequence,
        service_type=service_type,
        source_addr_ton=source_addr_ton,
        source_addr_npi=source_addr_npi,
        source_addr=source_addr,
        dest_addr_ton=dest_addr_ton,
        destination_addr=destination_addr,
        esm_class=esm_class,
        data_coding=data_coding,
        short_message=short_message,
        tlvs=tlvs,
        response_id=command_id | RESPONSE_BIT,
    )


def parse_submit_sm_resp(raw: bytes) -> tuple[int, int, str | None]:
    """(sequence, command_status, message_id) of a submit_sm_resp. An SMSC may leave
    the body out when the status is an error, or end it without the NUL."""
    _command_id, status, sequence = _STATUS_SEQUENCE.unpack_from(raw, 4)
    message_id = raw[16:].split(b"\x00", 1)[0].decode("latin-1")
    return sequence, status, message_id or None


def encode_deliver_sm_resp(sequence: int, status: int, command_id: int = DELIVER_SM_RESP) -> bytes:
    """deliver_sm_resp (or data_sm_resp, the same layout): the header and an empty
    message_id (unused, SMPP 3.4 4.6.2 and 4.7.2)."""
    return HEADER.pack(17, command_id, status, sequence) + b"\x00"


def encode_submit_sm(
    sequence: int,
    *,
    source_addr_ton: int,
    source_addr_npi: int,
    source_addr: str,
    dest_addr_ton: int,
    dest_addr_npi: int,
    destination_addr: str,
    esm_class: int,
    data_coding: int,
    registered_delivery: int,
    short_message: bytes,
) -> bytes:
    """submit_sm with the fields a reply sets; the rest empty or zero, no TLVs. A
    short_message over 254 octets cannot be sent in this field and is refused."""
    if len(short_message) > 254:
        raise ValueError(f"short_message of {len(short_message)} octets (at most 254)")
    body = b"".join(
        (
            b"\x00",  # service_type: the SMSC's default
            bytes((source_addr_ton, source_addr_npi)),
            source_addr.encode("ascii"),
            b"\x00",
            bytes((dest_addr_ton, dest_addr_npi)),
            destination_addr.encode("ascii"),
            # destination_addr's NUL; esm_class, protocol_id, priority_flag; empty
            # schedule_delivery_time and validity_period; registered_delivery,
            # replace_if_present_flag, data_coding, sm_default_msg_id
            bytes((0, esm_class, 0, 0, 0, 0, registered_delivery, 0, data_coding, 0)),
            bytes((len(short_message),)),
            short_message,
        )
    )
    return HEADER.pack(16 + len(body), SUBMIT_SM, 0, sequence) + body


def parse_tlvs(raw: bytes, position: int) -> dict[int, bytes]:
    """Every TLV from `position` to the end; a truncated last TLV is dropped, not fatal."""
    tlvs: dict[int, bytes] = {}
    while position + 4 <= len(raw):
        tag, length = struct.unpack_from(">HH", raw, position)
        position += 4
        tlvs[tag] = bytes(raw[position : position + length])
        position += length
    return tlvs


def parse_other(raw: bytes, client: object) -> object:
    """Any PDU but deliver_sm, through smpplib; PduParseError carries the header."""
    command_id, _status, sequence = struct.unpack_from(">LLL", raw, 4)
    try:
        command_codes.get_command_name(command_id)
        return smpp.parse_pdu(raw, client=client, allow_unknown_opt_params=True)
    except Exception as exc:  # smpplib raises KeyError/ValueError/its own on odd input
        raise PduParseError(command_id, sequence, f"unreadable PDU: {exc!r}") from exc


def parse_receipt(deliver: DeliverSm) -> DeliveryReceipt | None:
    """The receipt a deliver_sm carries: TLVs first, the "id: stat: err:" text otherwise."""
    text = deliver.short_message or deliver.tlvs.get(TLV_MESSAGE_PAYLOAD, b"")
    fields = {
        match.group(1).decode("ascii").lower(): match.group(2).decode("latin-1")
        for match in _RECEIPT_FIELD.finditer(text)
    }
    message_id = deliver.tlv_text(TLV_RECEIPTED_MESSAGE_ID) or fields.get("id")
    if not message_id:
        return None
    state = deliver.tlv_int(TLV_MESSAGE_STATE)
    if state in MESSAGE_STATES:
        status = MESSAGE_STATES[state]
    else:
        status = RECEIPT_STATS.get(fields.get("stat", "").upper(), "unknown")
    error = None
    err = fields.get("err")
    if err and err.strip("0"):
        error = f"err:{err}"
    network_error = deliver.tlvs.get(TLV_NETWORK_ERROR_CODE)
    if network_error and any(network_error[1:]):
        error = f"network_error:{network_error.hex()}" + (f" {error}" if error else "")
    return DeliveryReceipt(message_id=message_id, status=status, error=error)


def receipt_id_variants(message_id: str) -> list[str]:
    """The id as sent, then the other radix: some SMSCs answer submit_sm_resp in hex and
    write the receipt id in decimal, or the other way round."""
    variants = [message_id]
    if message_id.isdigit():
        variants.append(format(int(message_id), "x"))
        variants.append(format(int(message_id), "X"))
    else:
        with contextlib.suppress(ValueError):
            variants.append(str(int(message_id, 16)))
    return list(dict.fromkeys(variants))
