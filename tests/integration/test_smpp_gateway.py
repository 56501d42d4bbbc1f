"""The SMPP adapter on the real gateway (SQLite): exactly-once booking under redelivery,
the database outbox across link loss and restarts, receipts stored on the reply."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from adapters.db.schema import inbound_parts, messages, readings
from adapters.smpp import SmppAdapter
from sms_gateway.domain.segments import segment_count
from sms_gateway.runner import smpp_adapter
from tests.integration.smpp_support import (  # noqa: F401  (fixtures)
    SHORT_NUMBER,
    SmscPeer,
    smpp_settings,
    smsc_fixture,
    udh8,
)

pytestmark = [pytest.mark.smsc, pytest.mark.timeout(30)]

ESME_ROK = 0x00
ESME_RX_T_APPN = 0x64
ACCEPTED_REPLY = "Приняты показания ЛС 1234567833: Т1 1234 (+50)."


@pytest.fixture
async def gateway(sqlite_url, settings_for, gateway_factory):
    return await gateway_factory(settings_for(sqlite_url))


@pytest.fixture
async def adapters(smsc: SmscPeer, gateway):
    """adapters(**smpp_overrides) -> a started SmppAdapter on the real gateway."""
    started: list[SmppAdapter] = []

    async def start(**overrides) -> SmppAdapter:
        # Wired as serve wires it: parts of long MO are held in the database.
        adapter = smpp_adapter(gateway, smpp_settings(smsc.port, **overrides))
        started.append(adapter)
        await adapter.start()
        return adapter

    yield start
    for adapter in started:
        await adapter.stop(1.0)


async def rows(gateway, query):
    async with gateway.store.reader() as tx:
        return [tuple(row) for row in (await tx.conn.execute(query)).all()]


async def until(condition, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_mo_is_booked_and_answered_through_the_real_pipeline(
    smsc: SmscPeer, gateway, adapters
) -> None:
    """79161234567 > 1234567833 1234 books T1 1234 and the reply arrives as UCS-2."""
    await adapters()
    await smsc.wait_bound()
    sequence = await smsc.deliver(b"1234567833 1234", source_addr="79161234567")
    assert ESME_ROK == await smsc.deliver_resp(sequence)
    submit = await smsc.wait_pdu("submit_sm")
    assert ("79161234567", ACCEPTED_REPLY) == (submit["destination_addr"], submit["text"])
    assert [("2026-11", 1234)] == await rows(gateway, select(readings.c.period, readings.c.t1))


@pytest.mark.parametrize("gap", [timedelta(seconds=1), timedelta(minutes=5), timedelta(minutes=11)])
async def test_the_same_text_sent_twice_gets_two_answers(
    smsc: SmscPeer, gateway, adapters, clock, gap: timedelta
) -> None:
    """A subscriber sends the same reading twice (unsure it went through): however far
    apart, two MO and two replies, the second one the `duplicate` answer; one reading."""
    await adapters()
    await smsc.wait_bound()
    first = await smsc.deliver(b"1234567833 1234")
    assert ESME_ROK == await smsc.deliver_resp(first)
    await smsc.wait_pdu("submit_sm")
    clock.now += gap
    second = await smsc.deliver(b"1234567833 1234")
    assert ESME_ROK == await smsc.deliver_resp(second)
    submits = await smsc.wait_count(lambda e: e.get("command") == "submit_sm", 2)
    assert ACCEPTED_REPLY == submits[0]["text"]
    assert "Эти показания ЛС 1234567833 уже приняты: Т1 1234." == submits[1]["text"]
    assert [(1234,)] == await rows(gateway, select(readings.c.t1))
    outcomes = await rows(
        gateway,
        select(messages.c.outcome).where(messages.c.direction == "in").order_by(messages.c.id),
    )
    assert [("accepted",), ("duplicate",)] == outcomes


async def test_a_redelivery_after_a_link_loss_books_once_and_is_answered_once(
    smsc: SmscPeer, gateway, adapters
) -> None:
    """Our ESME_ROK may not have reached the SMSC: it answered nothing after it (not the
    reply's submit_sm, not the probing enquire_link) before the link died. The copy
    it delivers after the re-bind is that MO: one inbound row, one reading, one reply
    (sent once the link is back), and the copy is acknowledged."""
    await adapters(response_timeout_s=5.0)
    await smsc.wait_bound()
    await smsc.set_faults(silent_submit=True, silent_enquire_link=True)
    first = await smsc.deliver(b"1234567833 1234")
    assert ESME_ROK == await smsc.deliver_resp(first)
    await smsc.wait_pdu("enquire_link")
    await smsc.set_faults(silent_submit=False, silent_enquire_link=False)
    await smsc.command("drop")

    async def in_doubt() -> bool:
        acks = await rows(gateway, select(messages.c.ack).where(messages.c.direction == "in"))
        return [("doubt",)] == acks

    await until(in_doubt)
    await smsc.wait_bound(2)
    again = await smsc.deliver(b"1234567833 1234")
    assert ESME_ROK == await smsc.deliver_resp(again)

    async def reply_sent() -> bool:
        out = await rows(gateway, select(messages.c.status).where(messages.c.direction == "out"))
        return [("sent",)] == out

    await until(reply_sent)
    await asyncio.sleep(0.3)
    assert [(1234,)] == await rows(gateway, select(readings.c.t1))
    inbound = await rows(
        gateway, select(messages.c.ack, messages.c.outcome).where(messages.c.direction == "in")
    )
    assert [("redelivered", "accepted")] == inbound
    # The first submit_sm went unanswered, so the reply went out again after the bind:
    # the same text, and the only reply row.
    assert {ACCEPTED_REPLY} == {s["text"] for s in smsc.pdus("submit_sm")}


async def test_replies_queued_while_unbound_are_sent_once_after_the_bind(
    smsc: SmscPeer, gateway, adapters
) -> None:
    """Replies stored in the database outbox while the SMSC refuses binds are sent, each
    exactly once, when the bind finally succeeds."""
    await smsc.set_faults(bind_status=0x0D)
    adapter = await adapters()
    for phone in ("79161234567", "79031112233"):
        await gateway.pipeline.handle(_inbound(phone, "ПОМОЩЬ"))
    await asyncio.sleep(0.3)
    assert "connecting" == adapter.state
    assert [] == smsc.pdus("submit_sm")
    await smsc.set_faults(bind_status=0)
    await smsc.wait_count(lambda e: e.get("command") == "submit_sm", 4)

    async def all_sent() -> bool:
        statuses = await rows(
            gateway, select(messages.c.status).where(messages.c.direction == "out")
        )
        return [("sent",), ("sent",)] == statuses

    await until(all_sent)
    await asyncio.sleep(0.3)
    # The help text takes two parts: each part once, to each subscriber.
    submitted = sorted(
        (s["destination_addr"], s["short_message_hex"][10:12]) for s in smsc.pdus("submit_sm")
    )
    expected = [(phone, part) for phone in ("79031112233", "79161234567") for part in ["01", "02"]]
    assert expected == submitted


async def test_replies_left_from_before_a_restart_are_sent(
    smsc: SmscPeer, gateway, adapters
) -> None:
    """A reply stored while no adapter ran (the gateway restarted) goes out on the next
    outbox poll without any notification."""
    await gateway.pipeline.handle(_inbound("79161234567", "1234567833 1234"))
    await adapters()
    submit = await smsc.wait_pdu("submit_sm", timeout=5)
    assert ACCEPTED_REPLY == submit["text"]


async def test_receipt_is_stored_on_the_reply(smsc: SmscPeer, gateway, adapters) -> None:
    """A delivery receipt for a reply lands in that reply's delivery_status."""
    await adapters()
    await smsc.wait_bound()
    await smsc.deliver(b"1234567833 1234")
    submit = await smsc.wait_pdu("submit_sm")
    message_id = submit["assigned_message_id"]

    async def sent() -> bool:
        found = await rows(
            gateway, select(messages.c.transport_id).where(messages.c.direction == "out")
        )
        return [(message_id,)] == found

    await until(sent)
    receipt = f"id:{message_id} sub:001 dlvrd:001 stat:UNDELIV err:034 text:".encode()
    sequence = await smsc.deliver(receipt, esm_class=0x04)
    assert ESME_ROK == await smsc.deliver_resp(sequence)

    async def recorded() -> bool:
        found = await rows(
            gateway,
            select(messages.c.delivery_status, messages.c.error).where(
                messages.c.direction == "out"
            ),
        )
        return [("undeliverable", "err:034")] == found

    await until(recorded)


def _inbound(phone: str, text: str):
    from datetime import UTC, datetime

    from sms_gateway.domain.model import InboundSms

    return InboundSms(
        channel="smpp",
        phone="+" + phone,
        short_number=SHORT_NUMBER,
        text=text,
        received_at=datetime.now(UTC),
        dedupe_key=f"test:{phone}:{text}",
    )


async def test_acked_part_of_a_long_mo_survives_a_restart(
    smsc: SmscPeer, gateway, adapters
) -> None:
    """Part 1 of 2 is acked, the adapter dies (its memory with it); after the restart
    part 2 arrives and the joined message is booked: an acked part is on disk."""
    first = await adapters()
    await smsc.wait_bound()
    chunks = ["1234567833 ", "Т1 1234"]
    sequence = await smsc.deliver(
        udh8(0x33, 2, 1) + chunks[0].encode("utf-16-be"), data_coding=8, esm_class=0x40
    )
    assert ESME_ROK == await smsc.deliver_resp(sequence)
    assert [(1,)] == await rows(gateway, select(inbound_parts.c.sequence))
    await first.stop(1.0)

    await adapters()
    await smsc.wait_bound(count=2)
    sequence = await smsc.deliver(
        udh8(0x33, 2, 2) + chunks[1].encode("utf-16-be"), data_coding=8, esm_class=0x40
    )
    assert ESME_ROK == await smsc.deliver_resp(sequence)
    submit = await smsc.wait_pdu("submit_sm")
    assert ACCEPTED_REPLY == submit["text"]
    assert [(1234,)] == await rows(gateway, select(readings.c.t1))

    async def parts_discarded() -> bool:
        # What stays is the marker (sequence 0) saying the message was handed on.
        return [(0,)] == await rows(gateway, select(inbound_parts.c.sequence))

    await until(parts_discarded)


async def test_mo_during_graceful_stop_gets_a_temporary_error(
    smsc: SmscPeer, gateway, adapters
) -> None:
    """While stop() waits for an unanswered reply, a new MO is refused with
    ESME_RX_T_APPN (the SMSC keeps it and redelivers), nothing of it is stored, and
    the unconfirmed reply goes back to the outbox for the next start."""
    adapter = await adapters()
    await smsc.wait_bound()
    await smsc.set_faults(silent_submit=True)
    first = await smsc.deliver(b"1234567833 1234", source_addr="79161234567")
    assert ESME_ROK == await smsc.deliver_resp(first)
    await smsc.wait_pdu("submit_sm")

    stopping = asyncio.create_task(adapter.stop(1.5))
    await asyncio.sleep(0.3)
    late = await smsc.deliver(b"5550001112 5450 2130", source_addr="79167654321")
    assert ESME_RX_T_APPN == await smsc.deliver_resp(late)
    await stopping

    inbound = await rows(gateway, select(messages.c.phone).where(messages.c.direction == "in"))
    assert [("+79161234567",)] == inbound
    replies = await rows(gateway, select(messages.c.status).where(messages.c.direction == "out"))
    assert [("pending",)] == replies


# -- replies handed straight from the pipeline to the bound link ------------------------
# (SmppAdapter.offer: one-part replies go out without a task of their own; whatever the
# SMSC answers other than ESME_ROK takes the same road as a reply from the outbox.)

ESME_RTHROTTLED = 0x58
ESME_RMSGQFUL = 0x14
ESME_RINVDSTADR = 0x0B
SENDERS = ("79161234567", "79167654321", "79031112233")


async def _replies(gateway) -> list[tuple[str, str, str | None]]:
    return await rows(
        gateway,
        select(messages.c.phone, messages.c.status, messages.c.error)
        .where(messages.c.direction == "out")
        .order_by(messages.c.id),
    )


async def _send_readings(smsc: SmscPeer) -> None:
    for phone in SENDERS:
        sequence = await smsc.deliver(b"1234567833 1234", source_addr=phone)
        assert ESME_ROK == await smsc.deliver_resp(sequence)


async def test_direct_replies_ride_out_a_throttling_storm(smsc: SmscPeer, gateway, adapters):
    """ESME_RTHROTTLED / ESME_RMSGQFUL on replies straight from the pipeline: sending
    pauses, the same reply is submitted again, and every one is sent, none failed."""
    adapter = await adapters()
    await smsc.wait_bound()
    storm = [ESME_RTHROTTLED] * 4 + [ESME_RMSGQFUL] * 2
    await smsc.set_faults(submit_statuses=storm)
    await _send_readings(smsc)

    async def all_sent() -> bool:
        return [status for _, status, _ in await _replies(gateway)] == ["sent"] * 3

    await until(all_sent, timeout=15)
    await smsc.wait_count(lambda e: e.get("command") == "submit_sm", 3 + len(storm))
    await asyncio.sleep(0.1)
    assert 3 + len(storm) == len(smsc.pdus("submit_sm"))
    assert len(storm) == adapter.metrics.smpp_throttles.labels("default")._value.get()
    accepted = {s["destination_addr"] for s in smsc.pdus("submit_sm") if "assigned_message_id" in s}
    assert set(SENDERS) == accepted


async def test_direct_reply_refused_by_the_smsc_is_marked_failed(smsc: SmscPeer, gateway, adapters):
    """Any other error status: the reply is failed with that status, not retried."""
    await adapters()
    await smsc.wait_bound()
    await smsc.set_faults(submit_statuses=[ESME_RINVDSTADR])
    sequence = await smsc.deliver(b"1234567833 1234", source_addr="79161234567")
    assert ESME_ROK == await smsc.deliver_resp(sequence)

    async def failed() -> bool:
        found = await _replies(gateway)
        return bool(found) and found[0][1] == "failed"

    await until(failed)
    [(_, _, error)] = await _replies(gateway)
    assert error is not None and "submit_sm_resp 0x0000000b" in error
    await asyncio.sleep(0.2)
    assert 1 == len(smsc.pdus("submit_sm"))


async def test_direct_reply_without_an_answer_goes_back_and_out_again(
    smsc: SmscPeer, gateway, adapters
):
    """No submit_sm_resp in time: the reply is released to the outbox with the reason,
    and sent from there once the SMSC answers again."""
    await adapters(response_timeout_s=0.3)
    await smsc.wait_bound()
    await smsc.set_faults(silent_submit=True)
    sequence = await smsc.deliver(b"1234567833 1234", source_addr="79161234567")
    assert ESME_ROK == await smsc.deliver_resp(sequence)
    await smsc.wait_pdu("submit_sm")

    async def released() -> bool:
        return [("+79161234567", "pending", "no submit_sm_resp in time")] == await _replies(gateway)

    await until(released)
    await smsc.set_faults(silent_submit=False)

    async def sent() -> bool:
        found = await _replies(gateway)
        return bool(found) and found[0][1] == "sent"

    await until(sent, timeout=5)
    assert 2 == len(smsc.pdus("submit_sm"))


async def test_direct_replies_in_flight_when_the_link_drops_are_sent_after_the_rebind(
    smsc: SmscPeer, gateway, adapters
):
    """The SMSC drops TCP after the second of three replies: after the re-bind each
    subscriber has an answer, none more than two (those on the wire at the drop)."""
    await adapters()
    await smsc.wait_bound()
    await smsc.set_faults(drop_after_submits=2)
    for phone in SENDERS:
        await smsc.deliver(b"1234567833 1234", source_addr=phone)

    async def all_sent() -> bool:
        return [status for _, status, _ in await _replies(gateway)] == ["sent"] * 3

    await until(all_sent, timeout=15)
    await smsc.wait_bound(2)
    destinations = [s["destination_addr"] for s in smsc.pdus("submit_sm")]
    assert set(SENDERS) == set(destinations)
    assert all(destinations.count(phone) <= 2 for phone in SENDERS)


async def test_a_long_direct_reply_is_sent_in_parts(smsc: SmscPeer, gateway, adapters):
    """A reply of two parts (the help text) takes the general road: both parts, once."""
    await adapters()
    await smsc.wait_bound()
    await smsc.deliver("ПОМОЩЬ".encode("utf-16-be"), source_addr="79161234567", data_coding=8)
    await smsc.wait_count(lambda e: e.get("command") == "submit_sm", 2)

    async def sent() -> bool:
        return [("+79161234567", "sent", None)] == await _replies(gateway)

    await until(sent)
    parts = sorted(s["short_message_hex"][10:12] for s in smsc.pdus("submit_sm"))
    assert ["01", "02"] == parts


async def test_direct_replies_keep_to_max_send_rate(smsc: SmscPeer, gateway, adapters):
    """max_send_rate = 10/s: three replies due at once take at least 0.2 s to go out."""
    await adapters(max_send_rate=10.0)
    await smsc.wait_bound()
    started = time.monotonic()
    for phone in SENDERS:
        await smsc.deliver(b"1234567833 1234", source_addr=phone)
    await smsc.wait_count(lambda e: e.get("command") == "submit_sm", 3)
    assert time.monotonic() - started >= 0.18


async def test_direct_replies_keep_to_the_window(smsc: SmscPeer, gateway, adapters):
    """window = 2 and an SMSC that stops answering: two submit_sm go out, no third."""
    await adapters(window=2, response_timeout_s=5.0)
    await smsc.wait_bound()
    await smsc.set_faults(silent_submit=True)
    for phone in SENDERS:
        await smsc.deliver(b"1234567833 1234", source_addr=phone)
    await smsc.wait_count(lambda e: e.get("command") == "submit_sm", 2)
    await asyncio.sleep(0.3)
    assert 2 == len(smsc.pdus("submit_sm"))


async def test_a_report_for_several_accounts_too_long_for_one_sms_goes_as_one_per_account(
    smsc: SmscPeer, gateway, adapters
) -> None:
    """Three accounts' readings refused in one MO: three replies, each submitted to the
    sender on its own (two segments each) and each recorded sent."""
    await adapters()
    await smsc.wait_bound()
    text = b"1234567833 1000 5550001112 5000 2000 7770003334 800 600 1400"
    sequence = await smsc.deliver(text, source_addr="79161234567")
    assert ESME_ROK == await smsc.deliver_resp(sequence)

    async def all_sent() -> bool:
        return [status for _, status, _ in await _replies(gateway)] == ["sent"] * 3

    await until(all_sent, timeout=15)
    replies = await rows(
        gateway,
        select(messages.c.reply_index, messages.c.text, messages.c.status)
        .where(messages.c.direction == "out")
        .order_by(messages.c.reply_index),
    )
    assert [index for index, _, _ in replies] == [0, 1, 2]
    accounts = ("1234567833", "5550001112", "7770003334")
    assert all(account in text for account, (_, text, _) in zip(accounts, replies, strict=True))
    submits = smsc.pdus("submit_sm")
    assert {s["destination_addr"] for s in submits} == {"79161234567"}
    assert len(submits) == sum(segment_count(text) for _, text, _ in replies)
    assert [] == await rows(gateway, select(readings.c.t1))
