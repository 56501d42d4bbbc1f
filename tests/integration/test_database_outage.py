"""The database going away for a while: temporary errors meanwhile, nothing lost, recovery."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from adapters.db.schema import messages
from sms_gateway.domain.model import InboundSms
from sms_gateway.errors import TemporaryFailure

pytestmark = pytest.mark.postgres


def sms(index: int) -> InboundSms:
    return InboundSms(
        "smpp",
        "+79161234567",
        "7377",
        f"1234567833 {1200 + index}",
        datetime.now(UTC),
        external_id=f"mo-{index}",
    )


async def test_postgresql_stopped_then_started(private_postgres, settings_for, gateway_factory):
    """While PostgreSQL is down accept() fails fast and temporarily; once it is back the
    same gateway (same pool) stores and handles messages again, and nothing stored
    before the outage is lost."""
    gateway = await gateway_factory(
        settings_for(private_postgres.url, database={"upgrade_on_start": True}), migrate=True
    )
    before = await gateway.pipeline.accept(sms(1))
    await gateway.pipeline.process(before)

    private_postgres.stop()
    started = time.monotonic()
    with pytest.raises(TemporaryFailure):
        await gateway.pipeline.accept(sms(2))
    assert time.monotonic() - started < 15
    assert await gateway.store.ping() is False

    private_postgres.start()
    accepted = None
    for _ in range(20):
        try:
            accepted = await gateway.pipeline.accept(sms(2))
            break
        except TemporaryFailure:
            await asyncio.sleep(0.5)
    assert accepted is not None, "the gateway did not recover after PostgreSQL came back"
    reply = await gateway.pipeline.process(accepted)
    assert "corrected" == reply.outcome
    assert await gateway.store.ping() is True
    async with gateway.store.reader() as tx:
        inbound = (
            await tx.conn.execute(
                select(func.count()).select_from(messages).where(messages.c.direction == "in")
            )
        ).scalar_one()
    assert 2 == inbound
