"""pipeline.receive: stored and handled in one transaction, acknowledged once that is
committed, then answered. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from adapters.db.schema import messages, readings
from sms_gateway.domain.model import InboundSms
from sms_gateway.errors import TemporaryFailure
from sms_gateway.ports import AcceptedInbound


def mo(index: int, text: str = "1234567833 1250") -> InboundSms:
    return InboundSms(
        "smpp", "+79161234567", "7377", text, datetime.now(UTC), external_id=f"mo-{index}"
    )


@pytest.fixture
async def gateway(db_url, settings_for, gateway_factory):
    return await gateway_factory(settings_for(db_url))


_INBOUND_ROWS = (
    select(messages.c.status, messages.c.outcome)
    .where(messages.c.direction == "in")
    .order_by(messages.c.id)
)


async def _inbound_rows(gateway) -> list[tuple[str, str | None]]:
    async with gateway.store.reader() as tx:
        return [tuple(row) for row in await tx.conn.execute(_INBOUND_ROWS)]


def _inbound_rows_elsewhere(url: str) -> list[tuple[str, str | None]]:
    """Read on an engine of its own, in a thread of its own, blocking the caller: what
    another process sees at this very moment."""

    async def read() -> list[tuple[str, str | None]]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return [tuple(row) for row in await conn.execute(_INBOUND_ROWS)]
        finally:
            await engine.dispose()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, read()).result(timeout=30)


async def test_acknowledged_once_stored_and_handled_and_before_the_reply(gateway, db_url):
    """When acknowledge runs, another connection already sees the row committed, handled,
    and its reply stored; the caller gets the Reply only after the acknowledgement."""
    seen_at_ack: list[object] = []
    acknowledged: list[AcceptedInbound] = []

    def acknowledge(accepted: AcceptedInbound) -> None:
        acknowledged.append(accepted)
        seen_at_ack.append(_inbound_rows_elsewhere(db_url))

    reply = await gateway.pipeline.receive(mo(1), acknowledge)

    assert 1 == len(acknowledged) and not acknowledged[0].duplicate
    assert [[("processed", "accepted")]] == seen_at_ack
    assert ("accepted", acknowledged[0].inbound_id) == (reply.outcome, reply.inbound_id)
    assert reply.text is not None and "1250" in reply.text
    assert [("processed", "accepted")] == await _inbound_rows(gateway)


async def test_a_redelivery_is_acknowledged_as_duplicate_and_books_nothing_more(gateway):
    first = await gateway.pipeline.receive(mo(1), lambda accepted: None)
    duplicates: list[bool] = []
    again = await gateway.pipeline.receive(mo(1), lambda a: duplicates.append(a.duplicate))

    assert [True] == duplicates
    # Answered from the stored reply: no second reply row, no second booking.
    assert (first.inbound_id, first.outbound_id) == (again.inbound_id, again.outbound_id)
    assert {"redelivery": "true"} == again.extra
    async with gateway.store.reader() as tx:
        booked = (await tx.conn.execute(select(readings.c.t1))).all()
        replies = (
            await tx.conn.execute(select(messages.c.id).where(messages.c.direction == "out"))
        ).all()
    assert ([(1250,)], [(first.outbound_id,)]) == (booked, replies)


async def test_many_at_once_each_acknowledged_before_its_reply(gateway):
    """Concurrent receives share batches; every one is acknowledged, then answered."""
    events: list[tuple[str, int]] = []

    async def one(index: int) -> None:
        reply = await gateway.pipeline.receive(
            mo(index, f"1234567833 {1200 + index}"),
            lambda accepted: events.append(("ack", accepted.inbound_id)),
        )
        events.append(("reply", reply.inbound_id))

    await asyncio.gather(*(one(i) for i in range(30)))
    acked = [i for kind, i in events if kind == "ack"]
    assert 30 == len(set(acked))
    for inbound_id in acked:
        assert events.index(("ack", inbound_id)) < events.index(("reply", inbound_id))


async def test_not_stored_means_not_acknowledged(gateway):
    """The pipeline shutting down: TemporaryFailure, acknowledge never called."""
    await gateway.pipeline.aclose()
    called: list[AcceptedInbound] = []
    with pytest.raises(TemporaryFailure):
        await gateway.pipeline.receive(mo(1), called.append)
    assert [] == called


async def _ack_states(gateway) -> list[str | None]:
    async with gateway.store.reader() as tx:
        query = select(messages.c.ack).where(messages.c.direction == "in")
        return list((await tx.conn.execute(query)).scalars())


async def test_an_acknowledge_that_fails_leaves_the_message_handled_and_in_doubt(gateway):
    """The transport could not acknowledge: its error reaches the caller; the message is
    handled (its reply stored, to be sent) and in doubt, so that the SMSC's redelivery of
    it is answered by that one reply, not booked again."""

    def acknowledge(accepted: AcceptedInbound) -> None:
        raise RuntimeError("link gone")

    with pytest.raises(RuntimeError, match="link gone"):
        await gateway.pipeline.receive(mo(1), acknowledge)
    assert [("processed", "accepted")] == await _inbound_rows(gateway)
    await gateway.pipeline.aclose()  # waits for the doubt to be recorded
    assert ["doubt"] == await _ack_states(gateway)


async def test_processing_that_fails_still_stores_and_acknowledges(gateway, monkeypatch):
    """Handling raises (a bug): the message is stored alone and acknowledged all the same
    (else the SMSC would redeliver it forever); the error reaches the caller afterwards,
    and the row waits unprocessed for recovery."""
    acknowledged: list[AcceptedInbound] = []

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("bug in the rules")

    monkeypatch.setattr(gateway.pipeline, "_decide", broken)
    with pytest.raises(TemporaryFailure):
        await gateway.pipeline.receive(mo(1), acknowledged.append)
    assert 1 == len(acknowledged)
    assert [("received", None)] == await _inbound_rows(gateway)


async def test_recovery_leaves_what_is_queued_for_processing_here(gateway):
    """Stored and acknowledged apart, its processing queued in this process: recovery
    leaves it to that job (it handled it twice before, logging it twice); a row nobody
    here is processing is recovered."""
    from adapters.db.store import insert_inbound_many
    from sms_gateway.runner import recover_unprocessed

    [(inbound_id, _)] = await gateway.store.run_transaction(
        lambda conn: insert_inbound_many(conn, [mo(1)])
    )
    gateway.pipeline.in_flight.add(inbound_id)
    assert 0 == await recover_unprocessed(gateway, "smpp")
    assert [("received", None)] == await _inbound_rows(gateway)

    gateway.pipeline.in_flight.discard(inbound_id)
    assert 1 == await recover_unprocessed(gateway, "smpp")
    assert [("processed", "accepted")] == await _inbound_rows(gateway)


async def test_what_is_received_apart_is_out_of_flight_once_processed(gateway):
    """A burst goes the store-acknowledge-process way; once answered, nothing of it is
    left in flight (recovery would skip it for ever)."""

    class Watched(set):
        most = 0

        def add(self, inbound_id: int) -> None:
            super().add(inbound_id)
            self.most = max(self.most, len(self))

    gateway.pipeline.in_flight = watched = Watched()
    replies = await asyncio.gather(
        *(
            gateway.pipeline.receive(mo(i, f"1234567833 {1200 + i}"), lambda accepted: None)
            for i in range(30)
        )
    )
    assert 30 == len({reply.inbound_id for reply in replies})
    assert watched.most > 0  # some were received apart, and were in flight
    assert set() == gateway.pipeline.in_flight
