"""The outbox on SQLite and PostgreSQL: claims, status changes, stale claims."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from adapters.db.schema import messages
from sms_gateway.domain.model import InboundSms


@pytest.fixture
async def gateway(db_url, settings_for, gateway_factory):
    return await gateway_factory(settings_for(db_url))


async def _queue_replies(gateway, clock, count: int) -> None:
    for i in range(count):
        await gateway.pipeline.handle(
            InboundSms("smpp", f"+7916000000{i}", "7377", "ПОМОЩЬ", clock(), external_id=f"x{i}")
        )


async def _statuses(gateway) -> list[tuple[int, str, str | None]]:
    async with gateway.store.reader() as tx:
        rows = await tx.conn.execute(
            select(messages.c.id, messages.c.status, messages.c.transport_id)
            .where(messages.c.direction == "out")
            .order_by(messages.c.id)
        )
        return [tuple(row) for row in rows]


async def test_claimed_once_then_marked(gateway, clock):
    """A claim takes each pending reply once; marks land with the transport id."""
    await _queue_replies(gateway, clock, 3)
    first = await gateway.outbox.claim("smpp", 2)
    second = await gateway.outbox.claim("smpp", 5)
    assert (2, 1, []) == (len(first), len(second), await gateway.outbox.claim("smpp", 5))
    await gateway.outbox.mark_sent(first[0].id, "m-1")
    await gateway.outbox.mark_failed(first[1].id, "rejected 0x0B")
    await gateway.outbox.release(second[0].id, "link lost")
    assert [
        (first[0].id, "sent", "m-1"),
        (first[1].id, "failed", None),
        (second[0].id, "pending", None),
    ] == await _statuses(gateway)


async def test_stale_claims_go_back_except_those_still_being_sent(gateway, clock):
    """A claim older than the timeout returns to pending, unless this instance still
    holds it (a long throttled send must not be sent twice)."""
    await _queue_replies(gateway, clock, 2)
    held, abandoned = await gateway.outbox.claim("smpp", 2)
    clock.now += timedelta(minutes=5)
    released = await gateway.outbox.release_stale(timedelta(minutes=2), keep={held.id})
    assert 1 == released
    assert [(held.id, "sending", None), (abandoned.id, "pending", None)] == await _statuses(gateway)


async def test_recent_claims_are_not_stale(gateway, clock):
    await _queue_replies(gateway, clock, 1)
    await gateway.outbox.claim("smpp", 1)
    clock.now += timedelta(seconds=30)
    assert 0 == await gateway.outbox.release_stale(timedelta(minutes=2))


async def _queue_for_link(gateway, clock, phone: str, link: str, group: str) -> None:
    await gateway.pipeline.handle(
        InboundSms(
            "smpp", phone, "7377", "ПОМОЩЬ", clock(), external_id=f"{link}-{phone}",
            link=link, link_group=group,
        )
    )  # fmt: skip


async def test_a_claim_takes_only_the_groups_this_instance_carries(gateway, clock):
    """Replies of MTS and of Beeline wait; an instance that holds only Beeline links
    claims Beeline's (and those of no group), never MTS's."""
    await _queue_for_link(gateway, clock, "+79160000001", "mts", "mts")
    await _queue_for_link(gateway, clock, "+79030000001", "beeline_1", "beeline")
    await _queue_replies(gateway, clock, 1)  # no link: any instance may send it
    claimed = await gateway.outbox.claim("smpp", 10, ["beeline"])
    assert [("+79030000001", "beeline_1", "beeline"), ("+79160000000", None, None)] == sorted(
        (o.phone, o.link, o.link_group) for o in claimed
    )
    assert [] == await gateway.outbox.claim("smpp", 10, [])
    [mts] = await gateway.outbox.claim("smpp", 10, ["mts"])
    assert "+79160000001" == mts.phone


async def test_a_reply_that_waited_longer_than_the_expiry_is_failed_with_the_reason(gateway, clock):
    await _queue_for_link(gateway, clock, "+79160000001", "mts", "mts")
    clock.now += timedelta(hours=2)
    await _queue_for_link(gateway, clock, "+79160000002", "mts", "mts")
    clock.now += timedelta(minutes=30)
    assert 1 == await gateway.outbox.expire("smpp", timedelta(hours=1))
    async with gateway.store.reader() as tx:
        rows = await tx.conn.execute(
            select(messages.c.phone, messages.c.status, messages.c.error)
            .where(messages.c.direction == "out")
            .order_by(messages.c.phone)
        )
        found = [tuple(row) for row in rows]
    assert [
        (
            "+79160000001",
            "failed",
            "not sent within 3600 s: no bound link of its group (link_group)",
        ),
        ("+79160000002", "pending", None),
    ] == found
