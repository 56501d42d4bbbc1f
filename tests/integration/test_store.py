"""SqlStore.run_transaction: work queued together shares a commit, failures stay apart."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import pytest
from sqlalchemy import insert, select

from adapters.db.schema import phone_preferences

NOW = datetime(2026, 11, 18, 9, 0)


def _opt_out(phone: str, fail: bool = False):
    def work(conn):
        conn.execute(
            insert(phone_preferences).values(phone=phone, opted_out=True, updated_at=NOW)
        )
        if fail:
            raise ValueError(f"{phone} breaks after writing")
        return phone

    return work


async def _phones(gateway) -> list[str]:
    async with gateway.store.reader() as tx:
        rows = await tx.conn.execute(select(phone_preferences.c.phone).order_by("phone"))
        return [row.phone for row in rows]


@pytest.fixture
async def gateway(db_url, settings_for, gateway_factory):
    return await gateway_factory(settings_for(db_url), demo=False)


async def test_one_failing_piece_of_work_does_not_undo_the_others(gateway):
    """Three pieces queued at once: the failing one raises to its caller and its write
    is gone; the two others are committed."""
    def hold_the_writer(conn):
        # On SQLite the next three queue up behind this and share one transaction.
        time.sleep(0.3)

    blocker = asyncio.create_task(gateway.store.run_transaction(hold_the_writer))
    await asyncio.sleep(0.05)
    results = await asyncio.gather(
        gateway.store.run_transaction(_opt_out("+79000000001")),
        gateway.store.run_transaction(_opt_out("+79000000002", fail=True)),
        gateway.store.run_transaction(_opt_out("+79000000003")),
        return_exceptions=True,
    )
    assert "+79000000001" == results[0] and "+79000000003" == results[2]
    assert isinstance(results[1], ValueError)
    assert ["+79000000001", "+79000000003"] == await _phones(gateway)
    await blocker


async def test_work_alone_that_fails_leaves_nothing(gateway):
    with pytest.raises(ValueError, match="breaks after writing"):
        await gateway.store.run_transaction(_opt_out("+79000000004", fail=True))
    assert [] == await _phones(gateway)

