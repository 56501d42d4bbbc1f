"""Replies to node-smpp: addressing, encoding and splitting, window, pacing, throttling,
link loss and shutdown."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.integration.smpp_support import (  # noqa: F401  (fixtures)
    SHORT_NUMBER,
    AdapterFactory,
    MemoryGateway,
    SmscPeer,
    adapter_factory_fixture,
    bound,
    smsc_fixture,
)

pytestmark = [pytest.mark.smsc, pytest.mark.timeout(30)]

ESME_RTHROTTLED = 0x58
ESME_RMSGQFUL = 0x14
ESME_RINVDSTADR = 0x0B
ESME_RX_T_APPN = 0x64


def body_of(submit: dict) -> bytes:
    """The user data of a submit_sm without its UDH."""
    raw = bytes.fromhex(submit["short_message_hex"])
    return raw[1 + raw[0] :] if submit["esm_class"] & 0x40 else raw


def udh_of(submit: dict) -> bytes:
    raw = bytes.fromhex(submit["short_message_hex"])
    return raw[: 1 + raw[0]]


async def test_reply_to_an_mo_goes_from_the_short_number_to_the_subscriber(
    smsc: SmscPeer, adapter_factory: AdapterFactory
) -> None:
    """MO in, reply out: source = short number (configured TON/NPI), destination = the
    subscriber in international format, GSM 03.38 when the text fits."""
    gateway = MemoryGateway(reply=lambda inbound: "Prinyato: T1 1234 (+50)")
    await bound(adapter_factory, gateway)
    await smsc.deliver(b"1234567833 1234", source_addr="79161234567")
    submit = await smsc.wait_pdu("submit_sm")
    assert (SHORT_NUMBER, 5, 0, "79161234567", 1, 1, 0, 0, "Prinyato: T1 1234 (+50)") == (
        submit["source_addr"],
        submit["source_addr_ton"],
        submit["source_addr_npi"],
        submit["destination_addr"],
        submit["dest_addr_ton"],
        submit["dest_addr_npi"],
        submit["data_coding"],
        submit["esm_class"],
        submit["text"],
    )
    await gateway.until(lambda: gateway.outbound[1 + 1]["status"] == "sent")
    assert submit["assigned_message_id"] == gateway.outbound[2]["transport_id"]


async def test_cyrillic_reply_is_ucs2(smsc: SmscPeer, adapter_factory: AdapterFactory) -> None:
    """A reply outside the GSM alphabet goes as UCS-2 (data_coding 8)."""
    gateway = MemoryGateway()
    await bound(adapter_factory, gateway)
    gateway.queue_reply("+79161234567", "Приняты показания ЛС 1234567833: Т1 1234 (+50).")
    submit = await smsc.wait_pdu("submit_sm")
    assert (8, "Приняты показания ЛС 1234567833: Т1 1234 (+50).") == (
        submit["data_coding"],
        body_of(submit).decode("utf-16-be"),
    )


async def test_long_gsm_reply_never_cuts_an_escape_sequence(
    smsc: SmscPeer, adapter_factory: AdapterFactory
) -> None:
    """A 2-part GSM reply whose 153rd septet would be the first half of '€' moves the
    whole escape into part 2; both parts share one UDH reference."""
    gateway = MemoryGateway()
    await bound(adapter_factory, gateway)
    text = "x" * 152 + "€" + "y" * 20
    gateway.queue_reply("+79161234567", text)
    parts = await smsc.wait_count(lambda e: e.get("command") == "submit_sm", 2)
    bodies = [body_of(part) for part in parts]
    assert [152, 22] == [len(body) for body in bodies]
    assert text == b"".join(bodies).decode("gsm03.38")
    headers = [udh_of(part) for part in parts]
    assert [bytes((5, 0, 3, headers[0][3], 2, n)) for n in (1, 2)] == headers
    assert [0x40, 0x40] == [part["esm_class"] for part in parts]


async def test_long_ucs2_reply_never_cuts_a_surrogate_pair(
    smsc: SmscPeer, adapter_factory: AdapterFactory
) -> None:
    """A UCS-2 reply split where a surrogate pair would straddle the 67-unit boundary keeps
    the pair whole: every part decodes on its own."""
    gateway = MemoryGateway()
    await bound(adapter_factory, gateway)
    text = "Ж" * 66 + "😀" + "Я" * 10
    gateway.queue_reply("+79161234567", text)
    parts = await smsc.wait_count(lambda e: e.get("command") == "submit_sm", 2)
    decoded = [body_of(part).decode("utf-16-be", errors="strict") for part in parts]
    assert ["Ж" * 66, "😀" + "Я" * 10] == decoded


async def test_concatenation_reference_rotates(
    smsc: SmscPeer, adapter_factory: AdapterFactory
) -> None:
    """Two long replies in one session carry different UDH references."""
    gateway = MemoryGateway()
    await bound(adapter_factory, gateway)
    gateway.queue_reply("+79161234567", "a" * 200)
    gateway.queue_reply("+79161234567", "b" * 200)
    parts = await smsc.wait_count(lambda e: e.get("command") == "submit_sm", 4)
    references = {udh_of(part)[3] for part in parts}
    assert 2 == len(references)


async def test_throttling_storm_backs_off_and_retries_until_sent(
    smsc: SmscPeer, adapter_factory: AdapterFactory
) -> None:
    """ESME_RTHROTTLED / ESME_RMSGQFUL make the sender pause and retry the same part;
    every reply is sent once it is accepted, none is marked failed."""
    gateway = MemoryGateway()
    adapter = await bound(adapter_factory, gateway)
    storm = [ESME_RTHROTTLED] * 6 + [ESME_RMSGQFUL] * 2
    await smsc.set_faults(submit_statuses=storm)
    ids = [gateway.queue_reply(f"+7916000000{n}", f"reply {n}") for n in range(3)]
    await gateway.until(
        lambda: all(gateway.outbound[i]["status"] == "sent" for i in ids), timeout=15
    )
    submits = await smsc.wait_count(lambda e: e.get("command") == "submit_sm", 3 + len(storm))
    await asyncio.sleep(0.1)
    assert 3 + len(storm) == len(smsc.pdus("submit_sm"))
    assert 3 == len([s for s in submits if "assigned_message_id" in s])
    assert len(storm) == adapter.metrics.smpp_throttles.labels("default")._value.get()


async def test_permanent_error_is_recorded_on_the_reply(
    smsc: SmscPeer, adapter_factory: AdapterFactory
) -> None:
    """Any other error status marks the reply failed with the status, without retrying."""
    gateway = MemoryGateway()
    await bound(adapter_factory, gateway)
    await smsc.set_faults(submit_statuses=[ESME_RINVDSTADR])
    outbound_id = gateway.queue_reply("+79160000000", "reply")
    await gateway.until(lambda: gateway.outbound[outbound_id]["status"] == "failed")
    assert "submit_sm_resp 0x0000000b" in gateway.outbound[outbound_id]["error"]
    await asyncio.sleep(0.2)
    assert 1 == len(smsc.pdus("submit_sm"))


async def test_window_limits_unanswered_submits(
    smsc: SmscPeer, adapter_factory: AdapterFactory
) -> None:
    """With window = 3 and an SMSC that stops answering, exactly 3 submit_sm go out."""
    gateway = MemoryGateway()
    await bound(adapter_factory, gateway, window=3, response_timeout_s=5.0)
    await smsc.set_faults(silent_submit=True)
    for n in range(8):
        gateway.queue_reply(f"+7916000000{n}", f"reply {n}")
    await smsc.wait_count(lambda e: e.get("command") == "submit_sm", 3)
    await asyncio.sleep(0.3)
    assert 3 == len(smsc.pdus("submit_sm"))


async def test_unanswered_submit_is_released_and_sent_later(
    smsc: SmscPeer, adapter_factory: AdapterFactory
) -> None:
    """No submit_sm_resp within the response timeout: the reply goes back to the outbox
    and is sent once the SMSC answers again."""
    gateway = MemoryGateway()
    await bound(adapter_factory, gateway, response_timeout_s=0.3)
    await smsc.set_faults(silent_submit=True)
    outbound_id = gateway.queue_reply("+79160000000", "reply")
    await smsc.wait_pdu("submit_sm")
    await gateway.until(lambda: gateway.outbound[outbound_id]["error"] is not None)
    await smsc.set_faults(silent_submit=False)
    await gateway.until(lambda: gateway.outbound[outbound_id]["status"] == "sent", timeout=5)


async def test_sending_is_paced_by_max_send_rate(
    smsc: SmscPeer, adapter_factory: AdapterFactory
) -> None:
    """max_send_rate = 20/s spreads 11 submit_sm over at least half a second."""
    gateway = MemoryGateway()
    await bound(adapter_factory, gateway, max_send_rate=20.0, window=50)
    started = time.monotonic()
    ids = [gateway.queue_reply(f"+791600000{n:02d}", "reply") for n in range(11)]
    await gateway.until(lambda: all(gateway.outbound[i]["status"] == "sent" for i in ids))
    assert time.monotonic() - started >= 0.45


@pytest.mark.parametrize("fault", ["drop_after_submits", "unbind_after_submits"])
async def test_link_lost_mid_burst_sends_every_waiting_reply_after_reconnect(
    smsc: SmscPeer, adapter_factory: AdapterFactory, fault: str
) -> None:
    """The SMSC drops TCP (or unbinds) after 5 submits of a 30-reply burst: after the
    re-bind every reply is sent; only those in flight at the drop may go twice."""
    gateway = MemoryGateway()
    window = 4
    await bound(adapter_factory, gateway, window=window)
    await smsc.set_faults(**{fault: 5})
    ids = [gateway.queue_reply(f"+791600000{n:02d}", f"reply {n}") for n in range(30)]
    await gateway.until(
        lambda: all(gateway.outbound[i]["status"] == "sent" for i in ids), timeout=10
    )
    await smsc.wait_bound(2)
    # The peer reports a submit_sm on stdout before answering it, but that line may be
    # read after the answer has already marked the reply sent.
    seen = {f"791600000{n:02d}" for n in range(30)}
    await smsc.wait_for(lambda _: seen <= {s["destination_addr"] for s in smsc.pdus("submit_sm")})
    destinations = [s["destination_addr"] for s in smsc.pdus("submit_sm")]
    assert 30 == len(set(destinations))
    assert len(destinations) - 30 <= window
    resent = {d for d in destinations if destinations.count(d) > 1}
    assert all(gateway.outbound[i]["sends"] <= 2 for i in ids)
    assert len(resent) <= window


async def test_shutdown_flushes_replies_in_flight_then_unbinds(
    smsc: SmscPeer, adapter_factory: AdapterFactory
) -> None:
    """stop() while replies are being sent: MO arriving now get ESME_RX_T_APPN, the
    queued replies are all sent and confirmed, and unbind is the last thing sent."""
    gateway = MemoryGateway()
    adapter = await bound(adapter_factory, gateway, max_send_rate=100.0, window=5)
    ids = [gateway.queue_reply(f"+791600000{n:02d}", f"reply {n}") for n in range(20)]
    stopping = asyncio.create_task(adapter.stop(5.0))
    await asyncio.sleep(0.05)
    sequence = await smsc.deliver(b"1234567833 1234")
    assert ESME_RX_T_APPN == await smsc.deliver_resp(sequence)
    await stopping
    assert ["sent"] * 20 == [gateway.outbound[i]["status"] for i in ids]
    await smsc.wait_pdu("unbind")
    received = [e["command"] for e in smsc.events if e.get("event") == "pdu"]
    assert "unbind" == received[-1]
    assert [] == gateway.inbound


async def test_shutdown_deadline_gives_unconfirmed_replies_back(
    smsc: SmscPeer, adapter_factory: AdapterFactory
) -> None:
    """If the SMSC does not answer before the deadline, in-flight replies go back to the
    outbox (pending), none is lost or marked sent, and the link still unbinds."""
    gateway = MemoryGateway()
    adapter = await bound(adapter_factory, gateway, window=3, response_timeout_s=5.0)
    await smsc.set_faults(silent_submit=True)
    ids = [gateway.queue_reply(f"+791600000{n:02d}", f"reply {n}") for n in range(5)]
    await smsc.wait_count(lambda e: e.get("command") == "submit_sm", 3)
    await adapter.stop(0.5)
    assert ["pending"] * 5 == [gateway.outbound[i]["status"] for i in ids]
    await smsc.wait_pdu("unbind")
