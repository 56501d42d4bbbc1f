"""Octets <-> text for SMPP short messages: data_coding, UDH, GSM 03.38, UCS-2, splitting.

Pure functions over bytes; nothing here touches a socket or smpplib's Client.

Incoming: `decode_text` reads a short message body by its data_coding, `split_udh`
separates a User Data Header (concatenation IEs 0x00 and 0x08) from the body.
Outgoing: `encode_reply` picks GSM 03.38 when every character fits the default
alphabet or its extension table and UCS-2 otherwise, and splits long texts itself:
smpplib's `make_parts` can cut a GSM escape sequence or a UTF-16 surrogate pair in two.
A character outside the BMP goes as its UTF-16 surrogate pair (what handsets read in
data_coding 8); what neither coding can carry is sent as "?" (see `carriable`).
"""

from __future__ import annotations

import contextlib
import functools
import re
from dataclasses import dataclass

import gsm0338  # noqa: F401  (importing registers the "gsm03.38" codec)

GSM_CODEC = "gsm03.38"

DCS_DEFAULT = 0x00
DCS_IA5 = 0x01
DCS_LATIN1 = 0x03
DCS_UCS2 = 0x08

ESM_UDHI = 0x40
# Message type bits 2..5 of esm_class: SMSC delivery receipt (0x04), SME delivery or
# manual acknowledgement (0x08, 0x10), intermediate notification (0x20). Anything with
# one of them set is not a subscriber's text.
ESM_MESSAGE_TYPE_MASK = 0x3C

# Single-message capacities and per-part capacities once a 6-octet UDH is present.
GSM_SINGLE_SEPTETS = 160
GSM_PART_SEPTETS = 153
UCS2_SINGLE_UNITS = 70
UCS2_PART_UNITS = 67
MAX_PARTS = 255

_SMPP_CHARSETS = {
    DCS_IA5: "ascii",
    0x02: "latin-1",  # octet unspecified (8-bit binary): best effort
    DCS_LATIN1: "latin-1",
    0x04: "latin-1",  # octet unspecified (8-bit binary): best effort
    0x05: "shift_jis",
    0x06: "iso8859-5",
    0x07: "iso8859-8",
    DCS_UCS2: "utf-16-be",
}


def charset_for(data_coding: int, dcs0_charset: str = "gsm") -> str:
    """The Python codec that reads a body sent with this data_coding."""
    if data_coding == DCS_DEFAULT:
        return GSM_CODEC if dcs0_charset == "gsm" else "latin-1"
    if data_coding & 0xF0 == 0xF0:
        # GSM 03.38 "data coding / message class" group: bit 2 chooses 8-bit data.
        return "latin-1" if data_coding & 0x04 else GSM_CODEC
    if 0x10 <= data_coding <= 0x3F:
        # General data coding group with a message class: bits 3..2 are the alphabet.
        alphabet = (data_coding >> 2) & 0x03
        return {0: GSM_CODEC, 1: "latin-1", 2: "utf-16-be"}.get(alphabet, "latin-1")
    return _SMPP_CHARSETS.get(data_coding, "latin-1")


def decode_text(body: bytes, data_coding: int, dcs0_charset: str = "gsm") -> str:
    """The text of a short message body; undecodable octets become U+FFFD, never an error."""
    charset = charset_for(data_coding, dcs0_charset)
    if charset == "utf-16-be" and len(body) % 2:
        # An odd octet count is a sender bug; keep what can be read.
        body = body[:-1]
    return body.decode(charset, errors="replace")


@dataclass(frozen=True, slots=True)
class Concatenation:
    """Where one part sits in a concatenated message."""

    kind: str  # "udh8" | "udh16" | "sar"
    reference: int
    total: int
    sequence: int


def split_udh(short_message: bytes) -> tuple[Concatenation | None, bytes]:
    """Separate the UDH of a body sent with UDHI set; returns (concatenation, body)."""
    if not short_message:
        return None, short_message
    header_length = short_message[0]
    header = short_message[1 : 1 + header_length]
    body = short_message[1 + header_length :]
    concatenation = None
    position = 0
    while position + 2 <= len(header):
        element_id = header[position]
        element_length = header[position + 1]
        value = header[position + 2 : position + 2 + element_length]
        if element_id == 0x00 and element_length == 3 and len(value) == 3:
            concatenation = Concatenation("udh8", value[0], value[1], value[2])
        elif element_id == 0x08 and element_length == 4 and len(value) == 4:
            concatenation = Concatenation(
                "udh16", int.from_bytes(value[0:2], "big"), value[2], value[3]
            )
        position += 2 + element_length
    if concatenation is not None and not 1 <= concatenation.sequence <= concatenation.total:
        concatenation = None  # a nonsensical header: treat the part as a whole message
    return concatenation, body


@dataclass(frozen=True, slots=True)
class EncodedReply:
    """A reply ready for submit_sm: one body per part (UDH included when split)."""

    data_coding: int
    esm_class: int
    bodies: tuple[bytes, ...]


@functools.cache
def _gsm_alphabet() -> frozenset[str]:
    """Every character GSM 03.38 can carry: the default table and its extension."""
    alphabet = {bytes((octet,)).decode(GSM_CODEC) for octet in range(0x80) if octet != 0x1B}
    for octet in range(0x80):
        with contextlib.suppress(UnicodeDecodeError):
            extended = bytes((0x1B, octet)).decode(GSM_CODEC)
            if len(extended) == 1:
                alphabet.add(extended)
    return frozenset(alphabet)


@functools.lru_cache(maxsize=1024)
def _gsm_septets(character: str) -> bytes | None:
    try:
        return character.encode(GSM_CODEC)
    except UnicodeEncodeError:
        return None


def _gsm_units(text: str) -> list[bytes] | None:
    """GSM 03.38 octets per character (an escape pair stays one unit), or None."""
    units: list[bytes] = []
    for character in text:
        septets = _gsm_septets(character)
        if septets is None:
            return None
        units.append(septets)
    return units


def _ucs2_units(text: str) -> list[bytes]:
    """UTF-16BE octets per character: a surrogate pair stays one 4-octet unit."""
    return [character.encode("utf-16-be") for character in text]


def _pack(units: list[bytes], capacity: int) -> list[bytes]:
    """Greedy packing of whole units into chunks of at most `capacity` octets."""
    chunks: list[bytes] = []
    current = bytearray()
    for unit in units:
        if len(current) + len(unit) > capacity:
            chunks.append(bytes(current))
            current = bytearray()
        current += unit
    if current or not chunks:
        chunks.append(bytes(current))
    return chunks


# What no reply should put on the air, whatever the coding: C0 controls but line feed
# and carriage return (form feed too, although GSM's extension table has it: a page
# break means nothing in an SMS), DEL, C1 controls, lone surrogates (UTF-16 cannot
# encode them, and the codec would raise) and U+FFFE/U+FFFF (not characters; U+FFFE
# first in a UCS-2 body reads as a byte order mark).
_UNCARRIABLE = re.compile(r"[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def carriable(text: str) -> str:
    """`text` with every character GSM 03.38 and UCS-2 cannot carry as "?"; surrogate
    pairs (from a surrogatepass decoding) joined into their character first."""
    if _UNCARRIABLE.search(text) is None:
        return text
    if any("\ud800" <= ch <= "\udfff" for ch in text):
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return _UNCARRIABLE.sub("?", text)


class MessageTooLong(ValueError):
    """The reply would need more than 255 parts."""


def encode_reply(text: str, reference: int) -> EncodedReply:
    """Encode a reply; `reference` (0..255) is the concatenation reference if it is split.

    Characters neither coding can carry are sent as "?" (`carriable`), never raise."""
    text = carriable(text)
    # Most replies fit one SMS: encode the whole text first and cut it into units
    # (per character, the slow way) only when it has to be split. The alphabet test
    # is a set operation; the codec is slow to find out that Cyrillic does not fit.
    fits_gsm = _gsm_alphabet().issuperset(text)
    if fits_gsm:
        whole = text.encode(GSM_CODEC)
        if len(whole) <= GSM_SINGLE_SEPTETS:
            return EncodedReply(DCS_DEFAULT, 0, (whole,))
    else:
        whole = text.encode("utf-16-be")
        if len(whole) <= UCS2_SINGLE_UNITS * 2:
            return EncodedReply(DCS_UCS2, 0, (whole,))
    gsm_units = _gsm_units(text) if fits_gsm else None
    if gsm_units is not None:
        data_coding = DCS_DEFAULT
        units = gsm_units
        # One GSM octet per septet in SMPP (unpacked); the SMSC packs them.
        single, part = GSM_SINGLE_SEPTETS, GSM_PART_SEPTETS
    else:
        data_coding = DCS_UCS2
        units = _ucs2_units(text)
        single, part = UCS2_SINGLE_UNITS * 2, UCS2_PART_UNITS * 2
    whole = b"".join(units)
    if len(whole) <= single:
        return EncodedReply(data_coding, 0, (whole,))
    chunks = _pack(units, part)
    if len(chunks) > MAX_PARTS:
        raise MessageTooLong(f"reply needs {len(chunks)} parts")
    reference &= 0xFF
    bodies = tuple(
        bytes((0x05, 0x00, 0x03, reference, len(chunks), number)) + chunk
        for number, chunk in enumerate(chunks, start=1)
    )
    return EncodedReply(data_coding, ESM_UDHI, bodies)
