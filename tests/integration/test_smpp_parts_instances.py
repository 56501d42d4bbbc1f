"""Two `serve` instances on one database, each with its own bind to the SMSC: the parts
of one long MO delivered to different binds are joined once, by whichever instance
sees the set complete in `inbound_parts`; a set that stays incomplete is handed on once.

Real peers: the node-smpp SMSC delivers each part to the bind the test names, and two
real gateways (pipeline, outbox, part store) share one SQLite file or PostgreSQL.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import delete, select

from adapters.db.parts import SqlPartStore
from adapters.db.schema import inbound_parts, messages, readings
from adapters.smpp import SmppAdapter
from adapters.smpp.reassembly import MemoryPartStore, MessagePart
from sms_gateway.runner import smpp_adapter
from tests.integration.smpp_support import (  # noqa: F401  (fixtures)
    SHORT_NUMBER,
    MemoryGateway,
    SmscPeer,
    smpp_settings,
    smsc_fixture,
    udh8,
)

pytestmark = [pytest.mark.smsc, pytest.mark.timeout(60)]

ESME_ROK = 0x00
ACCEPTED_REPLY = "Приняты показания ЛС 1234567833: Т1 1234 (+50)."
# "1234567833 Т1 1234" in two UCS-2 parts, as a phone splits a long Cyrillic SMS.
CHUNKS = ["1234567833 ", "Т1 1234"]
A, B = "gateway-a", "gateway-b"
# Long enough that a joined message seen within it cannot come from the timeout path.
NO_TIMEOUT_S = 30.0

StartAdapter = Callable[..., Awaitable[SmppAdapter]]


@pytest.fixture
async def instances(
    smsc: SmscPeer, db_url: str, settings_for: Any, gateway_factory: Any
) -> AsyncIterator[tuple[Any, Any, StartAdapter]]:
    """Two gateways on one database, and start(gateway, system_id, **smpp_overrides) to
    bind an adapter for one of them, wired as `serve` wires it."""
    settings = settings_for(db_url)
    first = await gateway_factory(settings)
    second = await gateway_factory(settings, demo=False)
    started: list[SmppAdapter] = []

    async def start(gateway: Any, system_id: str, **overrides: Any) -> SmppAdapter:
        adapter = smpp_adapter(gateway, smpp_settings(smsc.port, system_id=system_id, **overrides))
        started.append(adapter)
        await adapter.start()
        await smsc.wait_for(lambda e: e.get("event") == "bound" and e["system_id"] == system_id)
        return adapter

    yield first, second, start
    for adapter in started:
        await adapter.stop(1.0)


async def rows(gateway: Any, query: Any) -> list[tuple[Any, ...]]:
    async with gateway.store.reader() as tx:
        return [tuple(row) for row in (await tx.conn.execute(query)).all()]


async def until(condition: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def part(reference: int, total: int, number: int, chunk: str) -> bytes:
    return udh8(reference, total, number) + chunk.encode("utf-16-be")


async def deliver_part(smsc: SmscPeer, system_id: str, body: bytes) -> None:
    sequence = await smsc.deliver(body, data_coding=8, esm_class=0x40, system_id=system_id)
    assert ESME_ROK == await smsc.deliver_resp(sequence, system_id=system_id)


async def part_rows(gateway: Any) -> list[tuple[Any, ...]]:
    """Parts still held (the handed-on marker, sequence 0, is not a part)."""
    return await rows(gateway, select(inbound_parts.c.sequence).where(inbound_parts.c.sequence > 0))


async def inbound_rows(gateway: Any) -> list[tuple[Any, ...]]:
    return await rows(
        gateway,
        select(messages.c.text, messages.c.parts, messages.c.incomplete).where(
            messages.c.direction == "in"
        ),
    )


async def settled(gateway: Any, smsc: SmscPeer, replies: int = 1) -> None:
    """Wait for the replies to be sent, then long enough for a wrong second hand-on
    (the other instance's part, its re-read, its accept) to show."""
    await smsc.wait_count(lambda e: e.get("command") == "submit_sm", replies, timeout=10)

    async def sent() -> bool:
        statuses = await rows(
            gateway, select(messages.c.status).where(messages.c.direction == "out")
        )
        return len(statuses) >= replies and all(status == ("sent",) for status in statuses)

    await until(sent)
    await asyncio.sleep(0.8)


@pytest.mark.parametrize("order", [(A, B), (B, A)], ids=["part1-on-a", "part1-on-b"])
async def test_parts_on_two_instances_join_into_one_message(
    smsc: SmscPeer, instances: tuple[Any, Any, StartAdapter], order: tuple[str, str]
) -> None:
    """Part 1 on one instance's bind, part 2 on the other's: the second to store its
    part finds the set complete in the database and hands it on at once. One message,
    complete, one booked reading, one reply; no part left behind."""
    first, second, start = instances
    await start(first, A, reassembly_timeout_s=NO_TIMEOUT_S)
    await start(second, B, reassembly_timeout_s=NO_TIMEOUT_S)
    for number, system_id in enumerate(order, start=1):
        await deliver_part(smsc, system_id, part(0x51, 2, number, CHUNKS[number - 1]))

    await settled(first, smsc)
    assert [("".join(CHUNKS), 2, False)] == await inbound_rows(first)
    assert [(1234,)] == await rows(first, select(readings.c.t1))
    assert [ACCEPTED_REPLY] == [pdu["text"] for pdu in smsc.pdus("submit_sm")]
    assert [] == await part_rows(first)


async def test_parts_completed_on_both_instances_at_once_are_handed_on_once(
    smsc: SmscPeer, instances: tuple[Any, Any, StartAdapter]
) -> None:
    """Both parts delivered at the same moment, one to each bind: both instances may
    read the complete set and both hand it on. The joined message's identity comes
    from stored values only, so the second accept is a redelivery: still one message,
    one reading, one reply."""
    first, second, start = instances
    await start(first, A, reassembly_timeout_s=NO_TIMEOUT_S)
    await start(second, B, reassembly_timeout_s=NO_TIMEOUT_S)
    await asyncio.gather(
        deliver_part(smsc, A, part(0x52, 2, 1, CHUNKS[0])),
        deliver_part(smsc, B, part(0x52, 2, 2, CHUNKS[1])),
    )

    await settled(first, smsc)
    assert [("".join(CHUNKS), 2, False)] == await inbound_rows(first)
    assert [(1234,)] == await rows(first, select(readings.c.t1))
    assert [ACCEPTED_REPLY] == [pdu["text"] for pdu in smsc.pdus("submit_sm")]
    assert [] == await part_rows(first)


async def test_missing_part_across_instances_is_handed_on_once_after_the_timeout(
    smsc: SmscPeer, instances: tuple[Any, Any, StartAdapter]
) -> None:
    """Part 1 on A, part 2 on B, part 3 never comes. At the timeout each instance
    re-reads the group: the first hands on both stored parts as one incomplete message,
    the other finds the rows gone (or hands on the same set, a redelivery). One
    message, one reply."""
    first, second, start = instances
    await start(first, A, reassembly_timeout_s=1.0)
    await start(second, B, reassembly_timeout_s=1.0)
    chunks = [*CHUNKS, " Т2 678"]
    await deliver_part(smsc, A, part(0x53, 3, 1, chunks[0]))
    await deliver_part(smsc, B, part(0x53, 3, 2, chunks[1]))
    await asyncio.sleep(0.3)
    assert [] == await inbound_rows(first)

    await settled(first, smsc)
    # Both instances' timeouts have passed by now (1 s after their part).
    assert [(chunks[0] + chunks[1], 3, True)] == await inbound_rows(first)
    outbound = await rows(first, select(messages.c.id).where(messages.c.direction == "out"))
    assert 1 == len(outbound)
    # One reply: however many submit_sm it took, they all carry the same text.
    assert 1 == len({pdu["text"] for pdu in smsc.pdus("submit_sm")})
    assert [] == await part_rows(first)


async def test_parts_left_by_a_crash_after_the_accept_are_recognised(
    smsc: SmscPeer, instances: tuple[Any, Any, StartAdapter]
) -> None:
    """An instance accepts a joined message and dies before discarding its parts. The
    instance that loads them (here at its start-up) hands the message on again after
    the timeout; the pipeline recognises it by its stored identity: no second message,
    no second reply, and the rows are gone."""
    first, second, start = instances
    await start(first, A, reassembly_timeout_s=NO_TIMEOUT_S)
    store = SqlPartStore(first.outbox.commits)
    group_key = f"udh8:79161234567:{SHORT_NUMBER}:{0x54}:2"
    await deliver_part(smsc, A, part(0x54, 2, 1, CHUNKS[0]))
    kept = await store.load_group(group_key)
    assert [1] == [stored.sequence for stored in kept]
    await deliver_part(smsc, A, part(0x54, 2, 2, CHUNKS[1]))
    await settled(first, smsc)
    assert [] == await store.load_group(group_key)

    # What the crash would have left: no marker (discard never ran), the first part as
    # it was stored, and the second.
    async with first.store.transaction() as tx:
        await tx.conn.execute(delete(inbound_parts).where(inbound_parts.c.group_key == group_key))
    await store.save(kept[0])
    await store.save(dataclasses.replace(kept[0], sequence=2, body=CHUNKS[1].encode("utf-16-be")))
    await start(second, B, reassembly_timeout_s=0.5)

    async def discarded() -> bool:
        return [] == await store.load_group(group_key)

    await until(discarded)
    await asyncio.sleep(0.5)
    assert [("".join(CHUNKS), 2, False)] == await inbound_rows(first)
    assert [(1234,)] == await rows(first, select(readings.c.t1))
    assert 1 == len(smsc.pdus("submit_sm"))


async def test_a_part_redelivered_to_the_other_instance_after_the_join_is_dropped(
    smsc: SmscPeer, instances: tuple[Any, Any, StartAdapter]
) -> None:
    """A joins both parts and answers. The SMSC then redelivers part 1 to B (its ack
    was lost, say). B acks it and recognises it as late from A's marker: no one-part
    incomplete message, no second reply, even after B's reassembly timeout."""
    first, second, start = instances
    await start(first, A, reassembly_timeout_s=NO_TIMEOUT_S)
    # B's timeout is also its marker's lifetime: long enough for the redelivery, short
    # enough to see that nothing is handed on after it.
    await start(second, B, reassembly_timeout_s=4.0)
    await deliver_part(smsc, A, part(0x56, 2, 1, CHUNKS[0]))
    await deliver_part(smsc, A, part(0x56, 2, 2, CHUNKS[1]))
    await settled(first, smsc)

    await deliver_part(smsc, B, part(0x56, 2, 1, CHUNKS[0]))
    await asyncio.sleep(5.0)  # past B's timeout

    assert [("".join(CHUNKS), 2, False)] == await inbound_rows(first)
    assert [ACCEPTED_REPLY] == [pdu["text"] for pdu in smsc.pdus("submit_sm")]


@pytest.mark.parametrize("kind", ["database", "memory"])
async def test_after_the_marker_ttl_the_same_key_is_a_new_message(
    instances: tuple[Any, Any, StartAdapter], kind: str
) -> None:
    """Phones reuse concatenation references: once the handed-on marker is older than
    its TTL, a part under the same key starts a new message (and the old marker goes)."""
    first, _second, _start = instances
    store = (
        SqlPartStore(first.outbox.commits, handed_on_ttl_s=0.3)
        if kind == "database"
        else MemoryPartStore(handed_on_ttl_s=0.3)
    )
    group_key = f"udh8:79161234567:{SHORT_NUMBER}:{0x57}:2"
    old = await first_part(store, group_key)
    await store.discard(group_key)
    await store.save(old)  # a late copy within the TTL: held, but not handed out
    assert [] == await store.load_group(group_key)
    assert [] == await store.load()

    await asyncio.sleep(0.4)
    fresh = dataclasses.replace(old, body="Т1 9999".encode("utf-16-be"))
    await store.save(fresh)
    assert [fresh.body] == [held.body for held in await store.load_group(group_key)]
    assert [fresh.body] == [held.body for held in await store.load()]


async def first_part(store: Any, group_key: str) -> MessagePart:
    part_one = MessagePart(
        group_key=group_key,
        source_addr="79161234567",
        destination_addr=SHORT_NUMBER,
        phone="+79161234567",
        reference=0x57,
        total=2,
        sequence=1,
        data_coding=8,
        body=CHUNKS[0].encode("utf-16-be"),
        received_at=datetime.now(UTC),
        external_id=None,
    )
    await store.save(part_one)
    return part_one


async def test_two_adapters_sharing_a_memory_part_store_join_like_the_database(
    smsc: SmscPeer,
) -> None:
    """The memory store (tests, benches) answers load_group like the table: two
    adapters sharing one join parts delivered to their two binds into one message."""
    gateway, parts = MemoryGateway(), MemoryPartStore()
    adapters = [
        SmppAdapter(
            smpp_settings(smsc.port, system_id=system_id, reassembly_timeout_s=NO_TIMEOUT_S),
            SHORT_NUMBER,
            gateway,
            gateway,
            part_store=parts,
        )
        for system_id in (A, B)
    ]
    try:
        for adapter in adapters:
            await adapter.start()
        await smsc.wait_bound(count=2)
        await deliver_part(smsc, B, part(0x55, 2, 2, CHUNKS[1]))
        await deliver_part(smsc, A, part(0x55, 2, 1, CHUNKS[0]))
        await gateway.until(lambda: len(gateway.inbound) == 1)
        await asyncio.sleep(0.3)
        assert [("".join(CHUNKS), False, 1)] == [
            (stored.inbound.text, stored.inbound.incomplete, stored.deliveries)
            for stored in gateway.inbound
        ]
        assert [] == await parts.load()
    finally:
        for adapter in adapters:
            await adapter.stop(1.0)
