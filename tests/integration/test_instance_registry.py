"""Instances on one database: heartbeats, taking over from the dead, MO in doubt and
their redeliveries. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from adapters.db.instances import InstanceRegistry
from adapters.db.schema import instances, messages
from sms_gateway.domain.model import InboundSms
from tests.conftest import FrozenClock


def mo(text: str = "1234567833 1250", phone: str = "+79161234567") -> InboundSms:
    """An SMPP MO without an SMSC id, as the adapter builds it."""
    return InboundSms("smpp", phone, "7377", text, datetime.now(UTC), may_be_redelivery=True)


@pytest.fixture
async def gateway(db_url, settings_for, gateway_factory):
    return await gateway_factory(settings_for(db_url))


def registry(gateway, name: str, clock: FrozenClock) -> InstanceRegistry:
    return InstanceRegistry(
        gateway.store,
        name,
        dead_after=timedelta(seconds=10),
        redelivery_window=timedelta(hours=1),
        clock=clock,
    )


async def rows(gateway, query) -> list[tuple]:
    async with gateway.store.reader() as tx:
        return [tuple(row) for row in (await tx.conn.execute(query)).all()]


async def claim_as(gateway, name: str) -> int:
    """A reply stored and claimed ("sending") by instance `name`; its id."""
    reply = await gateway.pipeline.handle(mo("ПОМОЩЬ", phone="+79031112233"))
    assert reply.outbound_id is not None
    await gateway.store.run_transaction(
        lambda conn: conn.execute(
            update(messages)
            .where(messages.c.id == reply.outbound_id)
            .values(status="sending", instance=name)
        )
    )
    return reply.outbound_id


async def status_of(gateway, outbound_id: int) -> str:
    [(status,)] = await rows(gateway, select(messages.c.status).where(messages.c.id == outbound_id))
    return str(status)


async def test_a_restart_under_the_same_name_takes_its_claims_back_at_once(gateway):
    clock = FrozenClock(datetime.now(UTC))
    before = registry(gateway, "gw-1", clock)
    await before.start()
    claimed = await claim_as(gateway, "gw-1")
    others = await claim_as(gateway, "gw-2")
    # kill -9: no retire. The same name starts again a second later.
    clock.now += timedelta(seconds=1)
    taken = await registry(gateway, "gw-1", clock).start()
    assert 1 == taken.replies_released
    assert ("pending", "sending") == (
        await status_of(gateway, claimed),
        await status_of(gateway, others),
    )


async def test_a_live_instance_takes_over_once_the_heartbeat_is_older_than_dead_after(gateway):
    clock = FrozenClock(datetime.now(UTC))
    dead, alive = registry(gateway, "gw-dead", clock), registry(gateway, "gw-alive", clock)
    await dead.start()
    await alive.start()
    claimed = await claim_as(gateway, "gw-dead")
    clock.now += timedelta(seconds=9)
    assert [] == await alive.beat()
    assert "sending" == await status_of(gateway, claimed)
    clock.now += timedelta(seconds=2)  # 11 s since gw-dead's last heartbeat
    [taken] = await alive.beat()
    assert ("gw-dead", 1) == (taken.name, taken.replies_released)
    assert "pending" == await status_of(gateway, claimed)
    # Taken over once: the next beat finds nothing more to do.
    assert [] == await alive.beat()
    [(released_at,)] = await rows(
        gateway, select(instances.c.released_at).where(instances.c.name == "gw-dead")
    )
    assert released_at is not None


async def test_a_beating_instance_is_never_taken_over(gateway):
    clock = FrozenClock(datetime.now(UTC))
    one, two = registry(gateway, "gw-1", clock), registry(gateway, "gw-2", clock)
    await one.start()
    await two.start()
    claimed = await claim_as(gateway, "gw-1")
    for _ in range(10):
        clock.now += timedelta(seconds=2)
        assert [] == await one.beat()
        assert [] == await two.beat()
    assert "sending" == await status_of(gateway, claimed)


async def test_a_second_process_under_the_same_name_is_noticed(gateway):
    clock = FrozenClock(datetime.now(UTC))
    first = registry(gateway, "gw-1", clock)
    await first.start()
    await registry(gateway, "gw-1", clock).start()
    await first.beat()
    assert not first.holds_name


async def test_mo_after_the_last_confirmed_one_come_into_doubt_when_the_instance_dies(gateway):
    """gw-1 stored three MO and knew the first acknowledged (its heartbeat said so);
    it dies. Another instance takes over: the other two are in doubt, so the SMSC's
    redelivery of one of them is recognised; the same text as the confirmed one is a
    new message."""
    clock = FrozenClock(datetime.now(UTC))
    gateway.pipeline.instance = "gw-1"
    one, other = registry(gateway, "gw-1", clock), registry(gateway, "gw-2", clock)
    await one.start()
    await other.start()
    texts = ["1234567833 1250", "1234567833 1260", "ПОМОЩЬ"]
    ids = [(await gateway.pipeline.accept(mo(text))).inbound_id for text in texts]
    await one.beat(confirmed_id=ids[0])
    clock.now += timedelta(seconds=11)
    [taken] = await other.beat()
    assert 2 == taken.mo_in_doubt
    acks = await rows(
        gateway, select(messages.c.ack).where(messages.c.id.in_(ids)).order_by(messages.c.id)
    )
    assert [(None,), ("doubt",), ("doubt",)] == acks

    redelivered = await gateway.pipeline.accept(mo("1234567833 1260"))
    assert (ids[1], True) == (redelivered.inbound_id, redelivered.duplicate)
    repeated = await gateway.pipeline.accept(mo("1234567833 1250"))
    assert not repeated.duplicate and repeated.inbound_id not in ids
    # Redelivered once: a further copy is the subscriber again.
    again = await gateway.pipeline.accept(mo("1234567833 1260"))
    assert not again.duplicate and again.inbound_id not in ids


async def test_a_redelivery_of_an_mo_in_doubt_is_answered_once_in_total(gateway):
    """receive (as SMPP drives it): the first MO books and is answered; its ack is then
    in doubt (the link died); the copy is acknowledged as a duplicate, books nothing
    and no second reply row is made."""
    first = await gateway.pipeline.receive(mo(), lambda accepted: None)
    await gateway.pipeline.unconfirmed([first.inbound_id])
    duplicates: list[bool] = []
    again = await gateway.pipeline.receive(mo(), lambda a: duplicates.append(a.duplicate))
    assert [True] == duplicates
    assert (first.inbound_id, first.outbound_id) == (again.inbound_id, again.outbound_id)
    replies = await rows(gateway, select(messages.c.id).where(messages.c.direction == "out"))
    assert [(first.outbound_id,)] == replies
    # The same text once more, no doubt left: a repeat, answered "already booked".
    third = await gateway.pipeline.receive(mo(), lambda accepted: None)
    assert third.inbound_id != first.inbound_id
    assert "duplicate" == third.outcome


async def test_an_mo_in_doubt_older_than_the_window_is_not_matched(gateway):
    old = InboundSms(
        "smpp",
        "+79161234567",
        "7377",
        "ПОМОЩЬ",
        datetime.now(UTC) - timedelta(hours=2),
        may_be_redelivery=True,
    )
    stored = await gateway.pipeline.accept(old)
    await gateway.pipeline.unconfirmed([stored.inbound_id])
    copy = await gateway.pipeline.accept(mo("ПОМОЩЬ"))
    assert not copy.duplicate


async def test_a_clean_retire_needs_no_take_over(gateway):
    clock = FrozenClock(datetime.now(UTC))
    one, other = registry(gateway, "gw-1", clock), registry(gateway, "gw-2", clock)
    await one.start()
    await other.start()
    await one.retire()
    clock.now += timedelta(seconds=30)
    assert [] == await other.beat()
