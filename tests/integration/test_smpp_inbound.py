"""MO from node-smpp: decoding, concatenation, receipts, no loss and no double booking."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.smpp_support import (  # noqa: F401  (fixtures)
    AdapterFactory,
    MemoryGateway,
    SmscPeer,
    adapter_factory_fixture,
    bound,
    smsc_fixture,
    udh8,
    udh16,
)

pytestmark = [pytest.mark.smsc, pytest.mark.timeout(30)]

ESME_ROK = 0x00
ESME_RX_T_APPN = 0x64


async def test_gsm7_with_extension_characters(
    smsc: SmscPeer, adapter_factory: AdapterFactory
) -> None:
    """data_coding 0 is read as GSM 03.38, escape sequences (€ [ ] { } ~ ^ | \\) included."""
    gateway = MemoryGateway()
    await bound(adapter_factory, gateway)
    text = "Schet [12] {T1} 1234€ ~^|\\ @£$¥èé"
    sequence = await smsc.deliver(text.encode("gsm03.38"), data_coding=0)
    assert ESME_ROK == await smsc.deliver_resp(sequence)
    assert [text] == [stored.inbound.text for stored in gateway.inbound]
    assert "+79161234567" == gateway.inbound[0].inbound.phone


async def test_dcs0_as_latin1_when_configured(
    smsc: SmscPeer, adapter_factory: AdapterFactory
) -> None:
    """dcs0_charset = latin1 reads data_coding 0 as ISO-8859-1 for SMSCs that send it so."""
    gateway = MemoryGateway()
    await bound(adapter_factory, gateway, dcs0_charset="latin1")
    sequence = await smsc.deliver("Zähler 1234 ÿ".encode("latin-1"), data_coding=0)
    assert ESME_ROK == await smsc.deliver_resp(sequence)
    assert ["Zähler 1234 ÿ"] == [stored.inbound.text for stored in gateway.inbound]


async def test_latin1(smsc: SmscPeer, adapter_factory: AdapterFactory) -> None:
    """data_coding 3 is ISO-8859-1."""
    gateway = MemoryGateway()
    await bound(adapter_factory, gateway)
    sequence = await smsc.deliver("Zähler Größe 1234".encode("latin-1"), data_coding=3)
    assert ESME_ROK == await smsc.deliver_resp(sequence)
    assert ["Zähler Größe 1234"] == [stored.inbound.text for stored in gateway.inbound]


async def test_ucs2_cyrillic_with_surrogate_pair(
    smsc: SmscPeer, adapter_factory: AdapterFactory
) -> None:
    """data_coding 8 is UTF-16BE: Cyrillic and characters outside the BMP both survive."""
    gateway = MemoryGateway()
    await bound(adapter_factory, gateway)
    text = "Показания 1234567833 Т1 12345 😀"
    sequence = await smsc.deliver(text.encode("utf-16-be"), data_coding=8)
    assert ESME_ROK == await smsc.deliver_resp(sequence)
    assert [text] == [stored.inbound.text for stored in gateway.inbound]


async def test_message_payload_when_short_message_is_empty(
    smsc: SmscPeer, adapter_factory: AdapterFactory
) -> None:
    """Text carried in the message_payload TLV is read like short_message."""
    gateway = MemoryGateway()
    await bound(adapter_factory, gateway)
    text = "Показания " + "1234 " * 60
    sequence = await smsc.deliver(b"", data_coding=8, message_payload=text.encode("utf-16-be"))
    assert ESME_ROK == await smsc.deliver_resp(sequence)
    assert [text] == [stored.inbound.text for stored in gateway.inbound]


async def test_an_mo_sent_as_data_sm_is_read_and_answered_with_data_sm_resp(
    smsc: SmscPeer, adapter_factory: AdapterFactory
) -> None:
    """Some SMSCs deliver MO as data_sm, the text in message_payload: stored like a
    deliver_sm and acknowledged with a data_sm_resp."""
    gateway = MemoryGateway()
    await bound(adapter_factory, gateway)
    text = "ЛС 1234567833 Т1 5450"
    sequence = await smsc.deliver(
        b"", data_coding=8, message_payload=text.encode("utf-16-be"), pdu="data_sm"
    )
    assert ESME_ROK == await smsc.deliver_resp(sequence, pdu="data_sm")
    assert [text] == [stored.inbound.text for stored in gateway.inbound]
    assert ["+79161234567"] == [stored.inbound.phone for stored in gateway.inbound]


async def test_unknown_tlvs_do_not_break_the_session(
    smsc: SmscPeer, adapter_factory: AdapterFactory
) -> None:
    """A vendor TLV, and a standard TLV smpplib's DeliverSM does not list, are skipped."""
    gateway = MemoryGateway()
    await bound(adapter_factory, gateway)
    sequence = await smsc.deliver(
        b"1234567833 1234", vendor_tlvs={0x1401: b"\x01\x02\x03", 0x0005: b"\x01"}
    )
    assert ESME_ROK == await smsc.deliver_resp(sequence)
    assert ["1234567833 1234"] == [stored.inbound.text for stored in gateway.inbound]
    sequence = await smsc.deliver(b"again")
    assert ESME_ROK == await smsc.deliver_resp(sequence)


@pytest.mark.parametrize("header", [udh8, udh16], ids=["udh8", "udh16"])
async def test_udh_concatenation_out_of_order(
    smsc: SmscPeer, adapter_factory: AdapterFactory, header
) -> None:
    """Parts with 8-bit or 16-bit reference UDH, sent 3-1-2, join into one message."""
    gateway = MemoryGateway()
    await bound(adapter_factory, gateway)
    chunks = ["Показания ", "1234567833 ", "Т1 12345"]
    reference = 0x1234 if header is udh16 else 0x42
    for number in (3, 1, 2):
        body = header(reference, 3, number) + chunks[number - 1].encode("utf-16-be")
        sequence = await smsc.deliver(body, data_coding=8, esm_class=0x40)
        assert ESME_ROK == await smsc.deliver_resp(sequence)
    await gateway.until(lambda: len(gateway.inbound) == 1)
    inbound = gateway.inbound[0].inbound
    assert ("".join(chunks), 3, False) == (inbound.text, inbound.parts, inbound.incomplete)


async def test_gsm_escape_split_across_parts_is_joined_before_decoding(
    smsc: SmscPeer, adapter_factory: AdapterFactory
) -> None:
    """An escape (0x1B) at the end of one part and its character in the next read as one €."""
    gateway = MemoryGateway()
    await bound(adapter_factory, gateway)
    first, second = b"Summa 10\x1b", b"e ok"
    for number, chunk in ((2, second), (1, first)):
        await smsc.deliver(udh8(7, 2, number) + chunk, esm_class=0x40)
    await gateway.until(lambda: len(gateway.inbound) == 1)
    assert "Summa 10€ ok" == gateway.inbound[0].inbound.text


async def test_sar_concatenation_out_of_order(
    smsc: SmscPeer, adapter_factory: AdapterFactory
) -> None:
    """Parts numbered by the sar_* TLVs join in sequence order."""
    gateway = MemoryGateway()
    await bound(adapter_factory, gateway)
    chunks = [b"1234567833 ", b"T1 12345 ", b"T2 678"]
    for number in (2, 3, 1):
        sequence = await smsc.deliver(
            chunks[number - 1],
            tlvs={
                "sar_msg_ref_num": 513,
                "sar_total_segments": 3,
                "sar_segment_seqnum": number,
            },
        )
        assert ESME_ROK == await smsc.deliver_resp(sequence)
    await gateway.until(lambda: len(gateway.inbound) == 1)
    inbound = gateway.inbound[0].inbound
    assert ("1234567833 T1 12345 T2 678", 3) == (inbound.text, inbound.parts)


async def test_missing_part_is_handled_incomplete_after_the_timeout(
    smsc: SmscPeer, adapter_factory: AdapterFactory
) -> None:
    """Parts 1 and 3 of 3 become one message marked incomplete once the timeout passes."""
    gateway = MemoryGateway()
    await bound(adapter_factory, gateway, reassembly_timeout_s=0.5)
    for number, chunk in ((1, b"1234567833 "), (3, b"T2 678")):
        sequence = await smsc.deliver(udh8(9, 3, number) + chunk, esm_class=0x40)
        assert ESME_ROK == await smsc.deliver_resp(sequence)
    await asyncio.sleep(0.2)
    assert [] == gateway.inbound
    await gateway.until(lambda: len(gateway.inbound) == 1, timeout=3)
    inbound = gateway.inbound[0].inbound
    assert ("1234567833 T2 678", 3, True) == (inbound.text, inbound.parts, inbound.incomplete)


async def test_the_same_text_again_on_a_live_link_is_a_new_message(
    smsc: SmscPeer, adapter_factory: AdapterFactory
) -> None:
    """No SMSC id, and the first MO's ESME_ROK was read (the SMSC answered the reply
    sent after it): the same text again is the subscriber sending again. Two MO,
    two replies, whenever it comes."""
    gateway = MemoryGateway()
    await bound(adapter_factory, gateway)
    first = await smsc.deliver(b"1234567833 1234")
    assert ESME_ROK == await smsc.deliver_resp(first)
    await smsc.wait_pdu("submit_sm")
    second = await smsc.deliver(b"1234567833 1234")
    assert ESME_ROK == await smsc.deliver_resp(second)
    await smsc.wait_count(lambda e: e.get("command") == "submit_sm", 2)
    assert [1, 1] == [stored.deliveries for stored in gateway.inbound]
    assert set() == gateway.doubtful


async def test_a_copy_after_the_link_died_unconfirmed_is_the_redelivery(
    smsc: SmscPeer, adapter_factory: AdapterFactory
) -> None:
    """The SMSC answers nothing after our ESME_ROK (neither the reply's submit_sm nor
    the probing enquire_link), then the link dies: the MO comes into doubt, and the
    copy after the re-bind is its redelivery. One MO, one reply in the outbox, sent
    once the link is back; the copy is acknowledged."""
    gateway = MemoryGateway()
    await bound(adapter_factory, gateway, response_timeout_s=5.0)
    await smsc.set_faults(silent_submit=True, silent_enquire_link=True)
    first = await smsc.deliver(b"1234567833 1234")
    assert ESME_ROK == await smsc.deliver_resp(first)
    await smsc.wait_pdu("submit_sm")
    await smsc.wait_pdu("enquire_link")  # the probe of the unconfirmed ESME_ROK
    await smsc.set_faults(silent_submit=False, silent_enquire_link=False)
    await smsc.command("drop")
    await gateway.until(lambda: gateway.doubtful == {gateway.inbound[0].inbound_id})
    await smsc.wait_bound(2)
    again = await smsc.deliver(b"1234567833 1234")
    assert ESME_ROK == await smsc.deliver_resp(again)
    await gateway.until(lambda: gateway.inbound[0].deliveries == 2)
    await gateway.until(lambda: [o["status"] for o in gateway.outbound.values()] == ["sent"])
    assert 1 == len(gateway.inbound)
    assert set() == gateway.doubtful  # redelivered once; a third copy would be new


async def test_a_link_that_dies_after_the_probe_was_answered_leaves_nothing_in_doubt(
    smsc: SmscPeer, adapter_factory: AdapterFactory
) -> None:
    """No reply goes out (the SMSC swallows submit_sm), but the enquire_link sent after
    the ESME_ROK is answered: the SMSC read it, so a copy after the drop is new."""
    gateway = MemoryGateway()
    adapter = await bound(adapter_factory, gateway, response_timeout_s=5.0)
    await smsc.set_faults(silent_submit=True)
    first = await smsc.deliver(b"1234567833 1234")
    assert ESME_ROK == await smsc.deliver_resp(first)
    await gateway.until(lambda: len(gateway.inbound) == 1)
    assert gateway.inbound[0].inbound_id - 1 == adapter.confirmed_mo_id()
    await smsc.wait_pdu("enquire_link")
    await gateway.until(lambda: adapter.confirmed_mo_id() == gateway.inbound[0].inbound_id)
    await smsc.set_faults(silent_submit=False)
    await smsc.command("drop")
    await smsc.wait_bound(2)
    again = await smsc.deliver(b"1234567833 1234")
    assert ESME_ROK == await smsc.deliver_resp(again)
    await gateway.until(lambda: len(gateway.inbound) == 2)
    assert set() == gateway.doubtful


async def test_redelivery_with_the_same_smsc_message_id(
    smsc: SmscPeer, adapter_factory: AdapterFactory
) -> None:
    """An MO carrying a message id (receipted_message_id) is identified by that id."""
    gateway = MemoryGateway()
    await bound(adapter_factory, gateway)
    for _ in range(2):
        sequence = await smsc.deliver(b"1234567833 1234", tlvs={"receipted_message_id": "MO-77"})
        assert ESME_ROK == await smsc.deliver_resp(sequence)
    assert [("MO-77", 2)] == [
        (stored.inbound.external_id, stored.deliveries) for stored in gateway.inbound
    ]


async def test_store_down_answers_temporary_error_then_accepts_the_redelivery(
    smsc: SmscPeer, adapter_factory: AdapterFactory
) -> None:
    """No durable store, no ack: ESME_RX_T_APPN, and the SMSC's retry is taken."""
    gateway = MemoryGateway()
    await bound(adapter_factory, gateway)
    gateway.accept_fails = True
    sequence = await smsc.deliver(b"1234567833 1234")
    assert ESME_RX_T_APPN == await smsc.deliver_resp(sequence)
    assert [] == gateway.inbound
    gateway.accept_fails = False
    sequence = await smsc.deliver(b"1234567833 1234")
    assert ESME_ROK == await smsc.deliver_resp(sequence)
    assert 1 == len(gateway.inbound)


@pytest.mark.parametrize("esm_class", [0x04, 0x44], ids=["0x04", "0x44"])
async def test_delivery_receipt_is_recorded_not_answered(
    smsc: SmscPeer, adapter_factory: AdapterFactory, esm_class: int
) -> None:
    """A receipt (text format, or TLVs) is recorded against the reply it reports on and
    never becomes an inbound message or gets a reply."""
    gateway = MemoryGateway()
    await bound(adapter_factory, gateway)
    outbound_id = gateway.queue_reply("+79161234567", "Показания приняты")
    submit = await smsc.wait_pdu("submit_sm")
    message_id = submit["assigned_message_id"]
    await gateway.until(lambda: gateway.outbound[outbound_id]["status"] == "sent")
    if esm_class == 0x04:
        receipt = (
            f"id:{message_id} sub:001 dlvrd:001 submit date:2611181200 "
            "done date:2611181201 stat:DELIVRD err:000 text:Pokazaniya"
        ).encode()
        sequence = await smsc.deliver(receipt, esm_class=esm_class)
    else:
        sequence = await smsc.deliver(
            b"",
            esm_class=esm_class,
            tlvs={"receipted_message_id": message_id, "message_state": 2},
        )
    assert ESME_ROK == await smsc.deliver_resp(sequence)
    await gateway.until(lambda: gateway.outbound[outbound_id]["delivery"] is not None)
    assert [(message_id, "delivered", None)] == gateway.receipts
    assert [] == gateway.inbound
    await asyncio.sleep(0.2)
    assert 1 == len(smsc.pdus("submit_sm"))


async def test_redelivery_recognised_by_a_vendor_message_id_tlv(
    smsc: SmscPeer, adapter_factory: AdapterFactory
) -> None:
    """With mo_id_tlv set, the vendor TLV's id is the MO's identity: a redelivery with a
    different text bucket is still the same message, another id is a new one."""
    gateway = MemoryGateway()
    await bound(adapter_factory, gateway, mo_id_tlv=0x1401)
    for message_id in (b"SMSC-1\x00", b"SMSC-1\x00", b"SMSC-2\x00"):
        sequence = await smsc.deliver(b"1234567833 1234", vendor_tlvs={0x1401: message_id})
        assert ESME_ROK == await smsc.deliver_resp(sequence)
    assert [("SMSC-1", 2), ("SMSC-2", 1)] == [
        (stored.inbound.external_id, stored.deliveries) for stored in gateway.inbound
    ]
