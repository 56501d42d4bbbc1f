"""The hot-path PDUs we read and write ourselves are exactly smpplib's, byte for byte.

smpplib is the reference: whatever it writes for a deliver_sm we must read the same
fields from, and whatever we write for a submit_sm or deliver_sm_resp must be what
smpplib would have sent for the same fields.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from smpplib import client as smpplib_client
from smpplib import smpp

from adapters.smpp.pdus import (
    PduParseError,
    encode_deliver_sm_resp,
    encode_submit_sm,
    parse_mo,
    parse_submit_sm_resp,
)

octets = st.integers(0, 255)
addresses = st.text(alphabet="0123456789+", max_size=20)
short_messages = st.binary(max_size=254)


def _client() -> smpplib_client.Client:
    return smpplib_client.Client("127.0.0.1", 2775, allow_unknown_opt_params=True)


@given(
    sequence=st.integers(1, 0x7FFFFFFF),
    service_type=st.sampled_from(["", "CMT", "WAP"]),
    source_addr_ton=octets,
    source_addr_npi=octets,
    source_addr=addresses,
    dest_addr_ton=octets,
    destination_addr=addresses,
    esm_class=octets,
    data_coding=octets,
    short_message=short_messages,
)
def test_deliver_sm_reads_as_smpplib_reads_it(
    sequence: int,
    service_type: str,
    source_addr_ton: int,
    source_addr_npi: int,
    source_addr: str,
    dest_addr_ton: int,
    destination_addr: str,
    esm_class: int,
    data_coding: int,
    short_message: bytes,
) -> None:
    client = _client()
    pdu = smpp.make_pdu(
        "deliver_sm",
        client=client,
        service_type=service_type,
        source_addr_ton=source_addr_ton,
        source_addr_npi=source_addr_npi,
        source_addr=source_addr,
        dest_addr_ton=dest_addr_ton,
        destination_addr=destination_addr,
        esm_class=esm_class,
        data_coding=data_coding,
        short_message=short_message,
    )
    pdu.sequence = sequence
    raw = pdu.generate()
    ours = parse_mo(raw)
    theirs = smpp.parse_pdu(raw, client=client)
    assert ours.sequence == theirs.sequence == sequence
    assert ours.service_type == (theirs.service_type or b"").decode("latin-1")
    assert ours.source_addr_ton == theirs.source_addr_ton
    assert ours.source_addr_npi == theirs.source_addr_npi
    assert ours.source_addr == (theirs.source_addr or b"").decode("latin-1") == source_addr
    assert ours.dest_addr_ton == theirs.dest_addr_ton
    assert ours.destination_addr == destination_addr
    assert ours.esm_class == esm_class
    assert ours.data_coding == data_coding
    assert ours.short_message == (theirs.short_message or b"") == short_message
    assert ours.tlvs == {}


def test_deliver_sm_keeps_every_tlv_after_the_short_message() -> None:
    client = _client()
    pdu = smpp.make_pdu(
        "deliver_sm",
        client=client,
        source_addr="79161234567",
        destination_addr="7377",
        short_message=b"",
        message_payload=b"1234567833 5450",
    )
    raw = pdu.generate() + bytes.fromhex("1401 0003 616263")  # a vendor TLV, tag 0x1401
    raw = len(raw).to_bytes(4, "big") + raw[4:]
    parsed = parse_mo(raw)
    assert parsed.short_message == b""
    assert parsed.tlvs == {0x0424: b"1234567833 5450", 0x1401: b"abc"}


@given(
    sequence=st.integers(1, 0x7FFFFFFF),
    source_addr_ton=octets,
    source_addr=addresses,
    destination_addr=addresses,
    esm_class=octets,
    data_coding=octets,
    message_payload=st.binary(min_size=1, max_size=400),
)
def test_data_sm_reads_as_smpplib_reads_it(
    sequence: int,
    source_addr_ton: int,
    source_addr: str,
    destination_addr: str,
    esm_class: int,
    data_coding: int,
    message_payload: bytes,
) -> None:
    client = _client()
    pdu = smpp.make_pdu(
        "data_sm",
        client=client,
        source_addr_ton=source_addr_ton,
        source_addr=source_addr,
        destination_addr=destination_addr,
        esm_class=esm_class,
        data_coding=data_coding,
        message_payload=message_payload,
    )
    pdu.sequence = sequence
    raw = pdu.generate()
    ours = parse_mo(raw)
    theirs = smpp.parse_pdu(raw, client=client)
    assert ours.sequence == theirs.sequence == sequence
    assert ours.source_addr_ton == theirs.source_addr_ton == source_addr_ton
    assert ours.source_addr == source_addr and ours.destination_addr == destination_addr
    assert ours.esm_class == esm_class and ours.data_coding == data_coding
    assert ours.short_message == b""
    assert ours.tlvs == {0x0424: theirs.message_payload}
    assert ours.response_id == 0x80000103


def test_data_sm_resp_is_what_smpplib_writes() -> None:
    pdu = smpp.make_pdu("data_sm_resp", client=_client(), status=0x58)
    pdu.sequence = 9
    assert encode_deliver_sm_resp(9, 0x58, 0x80000103) == pdu.generate()


@pytest.mark.parametrize(
    "raw",
    [
        # header only: the mandatory fields are missing
        bytes.fromhex("00000010 00000005 00000000 00000007"),
        # source_addr without its NUL
        bytes.fromhex("00000016 00000005 00000000 00000007 00 0101 3739"),
        # sm_length 10, one octet of short_message
        bytes.fromhex(
            "00000020 00000005 00000000 00000007 00 0101 3700 0000 3700 000000 00 00 00000000 0a 41"
        ),
    ],
)
def test_a_broken_deliver_sm_is_refused_with_its_sequence(raw: bytes) -> None:
    with pytest.raises(PduParseError) as caught:
        parse_mo(raw)
    assert caught.value.sequence == 7
    assert caught.value.command_id == 5


@given(sequence=st.integers(1, 0x7FFFFFFF), status=st.integers(0, 0xFFFFFFFF))
def test_deliver_sm_resp_is_what_smpplib_writes(sequence: int, status: int) -> None:
    pdu = smpp.make_pdu("deliver_sm_resp", client=_client(), status=status)
    pdu.sequence = sequence
    assert encode_deliver_sm_resp(sequence, status) == pdu.generate()


@given(
    sequence=st.integers(1, 0x7FFFFFFF),
    source_addr_ton=octets,
    source_addr_npi=octets,
    source_addr=addresses,
    dest_addr_ton=octets,
    dest_addr_npi=octets,
    destination_addr=addresses,
    esm_class=octets,
    data_coding=octets,
    registered_delivery=octets,
    short_message=short_messages,
)
def test_submit_sm_is_what_smpplib_writes(sequence: int, **fields: object) -> None:
    pdu = smpp.make_pdu("submit_sm", client=_client(), **fields)
    pdu.sequence = sequence
    assert encode_submit_sm(sequence, **fields) == pdu.generate()  # type: ignore[arg-type]


def test_submit_sm_refuses_what_the_field_cannot_hold() -> None:
    fields = dict(
        source_addr_ton=5,
        source_addr_npi=0,
        source_addr="7377",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="79161234567",
        esm_class=0,
        data_coding=8,
        registered_delivery=1,
    )
    with pytest.raises(ValueError):
        encode_submit_sm(1, short_message=b"x" * 255, **fields)  # type: ignore[arg-type]
    with pytest.raises(UnicodeEncodeError):
        encode_submit_sm(1, short_message=b"", **{**fields, "source_addr": "Газ"})  # type: ignore[arg-type]


@given(
    sequence=st.integers(1, 0x7FFFFFFF),
    status=st.integers(0, 0xFFFFFFFF),
    message_id=st.text(alphabet="0123456789abcdefABCDEF-", max_size=64),
)
def test_submit_sm_resp_reads_as_smpplib_reads_it(
    sequence: int, status: int, message_id: str
) -> None:
    client = _client()
    pdu = smpp.make_pdu("submit_sm_resp", client=client, status=status, message_id=message_id)
    pdu.sequence = sequence
    raw = pdu.generate()
    theirs = smpp.parse_pdu(raw, client=client)
    their_id = theirs.message_id.decode("latin-1") if theirs.message_id else None
    assert parse_submit_sm_resp(raw) == (sequence, status, their_id or None)


def test_submit_sm_resp_without_a_body_has_no_message_id() -> None:
    # Some SMSCs leave the body out of an error response.
    raw = bytes.fromhex("00000010 80000004 00000058 0000002a")
    assert parse_submit_sm_resp(raw) == (42, 0x58, None)
