"""Reading PDUs off the wire into plain data the asyncio side can use.

smpplib parses the mandatory fields. Optional parameters (TLVs) are walked here
because smpplib drops vendor TLVs (we may need a vendor message id) and raises on a
standard TLV that its DeliverSM class does not list; no TLV may kill a session.
"""

from __future__ import annotations

import contextlib
import re
import struct
from dataclasses import dataclass, field

from smpplib import command_codes, exceptions, smpp

TLV_RECEIPTED_MESSAGE_ID = 0x001E
TLV_SAR_MSG_REF_NUM = 0x020C
TLV_SAR_TOTAL_SEGMENTS = 0x020E
TLV_SAR_SEGMENT_SEQNUM = 0x020F
TLV_NETWORK_ERROR_CODE = 0x0423
TLV_MESSAGE_PAYLOAD = 0x0424
TLV_MESSAGE_STATE = 0x0427

HEADER = struct.Struct(">LLLL")

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


def parse_deliver_sm(raw: bytes, client: object) -> DeliverSm:
    """Read a deliver_sm; raises PduParseError when even the mandatory part is broken."""
    command_id, sequence = struct.unpack_from(">L", raw, 4)[0], struct.unpack_from(">L", raw, 12)[0]
    try:
        position = 16
        position = _skip_cstring(raw, position)  # service_type
        position += 2
        position = _skip_cstring(raw, position)  # source_addr
        position += 2
        position = _skip_cstring(raw, position)  # destination_addr
        position += 3  # esm_class, protocol_id, priority_flag
        position = _skip_cstring(raw, position)  # schedule_delivery_time
        position = _skip_cstring(raw, position)  # validity_period
        position += 4  # registered_delivery, replace_if_present, data_coding, sm_default_msg_id
        sm_length = raw[position]
        mandatory_end = position + 1 + sm_length
        if mandatory_end > len(raw):
            raise ValueError("short_message runs past the PDU")
        pdu = smpp.parse_pdu(raw[:mandatory_end], client=client, allow_unknown_opt_params=True)
        tlvs = parse_tlvs(raw, mandatory_end)
    except (ValueError, IndexError, struct.error, exceptions.PDUError) as exc:
        raise PduParseError(command_id, sequence, f"unreadable deliver_sm: {exc}") from exc
    return DeliverSm(
        sequence=sequence,
        service_type=_text(pdu.service_type),
        source_addr_ton=pdu.source_addr_ton or 0,
        source_addr_npi=pdu.source_addr_npi or 0,
        source_addr=_text(pdu.source_addr),
        dest_addr_ton=pdu.dest_addr_ton or 0,
        destination_addr=_text(pdu.destination_addr),
        esm_class=pdu.esm_class or 0,
        data_coding=pdu.data_coding or 0,
        short_message=bytes(pdu.short_message or b""),
        tlvs=tlvs,
    )


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


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("latin-1")
    return str(value)


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
