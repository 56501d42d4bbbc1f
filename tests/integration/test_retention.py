"""Retention on SQLite and PostgreSQL: old messages pruned in batches while SMS keep
being answered; readings, recent messages, a pending reply and an unprocessed inbound
untouched.

The history is written at the clock's default (2026-11-18, inside the reading window)
and pruned as of PRUNE_AT, 400 days keeping everything after 2026-11-20; "recent"
traffic is written at 2027-12-20.
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select
from structlog.testing import capture_logs

from adapters.db.parts import SqlPartStore
from adapters.db.retention import PruneCounts, prune
from adapters.db.schema import (
    inbound_parts,
    messages,
    ops_login_failures,
    pending_confirmations,
    readings,
)
from adapters.http.queries import record_login_failure
from adapters.smpp.reassembly import MessagePart
from sms_gateway.domain.model import InboundSms
from sms_gateway.housekeeping import prune_loop
from tests.conftest import ROOT

PRUNE_AT = datetime(2027, 12, 25, 9, 0, tzinfo=UTC)
KEEP = timedelta(days=400)
RECENT = datetime(2027, 12, 20, 9, 0, tzinfo=UTC)
PRUNED_TABLES = (messages, inbound_parts, pending_confirmations, ops_login_failures)


@pytest.fixture
async def gateway(db_url, settings_for, gateway_factory):
    return await gateway_factory(settings_for(db_url))


@dataclass
class History:
    kept_message_ids: set[int]
    pruned_message_ids: set[int]


def _sms(phone: str, text: str, at: datetime, external_id: str) -> InboundSms:
    return InboundSms("smpp", phone, "7377", text, at, external_id=external_id)


def _part(group_key: str, at: datetime) -> MessagePart:
    return MessagePart(
        group_key=group_key,
        source_addr="79161234567",
        destination_addr="7377",
        phone="+79161234567",
        reference=7,
        total=2,
        sequence=1,
        data_coding=8,
        body="1234567833 ".encode("utf-16-be"),
        received_at=at,
    )


async def _history(gateway, clock) -> History:
    """A year and more of traffic in miniature: what must go and what must stay."""
    old = clock()
    booked = await gateway.pipeline.handle(
        _sms("+79161234567", "1234567833 1234", old, "old-booked")
    )
    # 16,000 kWh more in 29 days: the subscriber is asked to confirm (a pending row).
    confirm = await gateway.pipeline.handle(
        _sms("+79167654321", "5550001112 21400 2100", old, "old-confirm")
    )
    failed = await gateway.pipeline.handle(_sms("+79160000002", "ПОМОЩЬ", old, "old-failed"))
    pending = await gateway.pipeline.handle(_sms("+79160000001", "ПОМОЩЬ", old, "old-pending"))
    stuck = await gateway.pipeline.accept(_sms("+79160000003", "ПОМОЩЬ", old, "old-stuck"))
    claimed = {o.inbound_id: o for o in await gateway.outbox.claim("smpp", 10)}
    await gateway.outbox.mark_sent(claimed[booked.inbound_id].id, "m-booked")
    await gateway.outbox.mark_sent(claimed[confirm.inbound_id].id, "m-confirm")
    await gateway.outbox.mark_failed(claimed[failed.inbound_id].id, "rejected 0x0B")
    await gateway.outbox.release(claimed[pending.inbound_id].id, "link lost")
    assert await gateway.outbox.record_delivery_status("m-booked", "DELIVRD")

    clock.now = RECENT
    recent = await gateway.pipeline.handle(
        _sms("+79161234567", "1234567833 1300", RECENT, "recent-booked")
    )
    recent_confirm = await gateway.pipeline.handle(
        _sms("+79001112233", "7770003334 90000 610 1500", RECENT, "recent-confirm")
    )
    for outbound in await gateway.outbox.claim("smpp", 10):
        if outbound.inbound_id == pending.inbound_id:  # the link is lost again
            await gateway.outbox.release(outbound.id, "link lost")
        else:
            await gateway.outbox.mark_sent(outbound.id, f"m-{outbound.id}")

    parts = SqlPartStore(gateway.outbox.commits)
    await parts.save(_part("old-group", old))
    await parts.save(_part("orphan-group", PRUNE_AT - timedelta(days=15)))
    await parts.save(_part("live-group", PRUNE_AT - timedelta(seconds=30)))
    await record_login_failure(gateway.store, "10.0.0.1", old, old - timedelta(hours=1))
    await record_login_failure(
        gateway.store, "10.0.0.2", PRUNE_AT - timedelta(hours=1), old - timedelta(hours=1)
    )

    def ids_of(*inbound_ids: int) -> set[int]:
        return set(inbound_ids) | {claimed[i].id for i in inbound_ids if i in claimed}

    recent_ids = {recent.inbound_id, recent.outbound_id}
    recent_ids |= {recent_confirm.inbound_id, recent_confirm.outbound_id}
    return History(
        kept_message_ids=ids_of(pending.inbound_id, stuck.inbound_id) | recent_ids,
        pruned_message_ids=ids_of(booked.inbound_id, confirm.inbound_id, failed.inbound_id),
    )


async def _count(gateway, table) -> int:
    async with gateway.store.reader() as tx:
        return int((await tx.conn.execute(select(func.count()).select_from(table))).scalar_one())


async def _counts(gateway) -> dict[str, int]:
    return {table.name: await _count(gateway, table) for table in PRUNED_TABLES}


async def _message_ids(gateway) -> set[int]:
    async with gateway.store.reader() as tx:
        return {int(i) for i in (await tx.conn.execute(select(messages.c.id))).scalars()}


async def _readings(gateway) -> list[tuple]:
    async with gateway.store.reader() as tx:
        return [tuple(r) for r in await tx.conn.execute(select(readings).order_by(readings.c.id))]


async def _write_old_log(
    gateway, pairs: int, start: datetime = datetime(2026, 1, 10, 8, 0)
) -> None:
    """`pairs` old inbound SMS, processed, each with a reply sent and delivered."""

    def write(conn) -> None:
        inbound_rows = [
            {
                "direction": "in",
                "channel": "smpp",
                "phone": f"+7916{i:07d}",
                "short_number": "7377",
                "text": "ПОМОЩЬ",
                "outcome": "help",
                "created_at": start + timedelta(seconds=10 * i),
                "processed_at": start + timedelta(seconds=10 * i),
                "external_id": f"bulk-{i}",
                "status": "processed",
                "attempts": 0,
                "parts": 1,
                "incomplete": False,
            }
            for i in range(pairs)
        ]
        ids = (
            conn.execute(
                insert(messages).returning(messages.c.id, sort_by_parameter_order=True),
                inbound_rows,
            )
            .scalars()
            .all()
        )
        conn.execute(
            insert(messages),
            [
                {
                    **row,
                    "direction": "out",
                    "text": "Помощь: ...",
                    "external_id": None,
                    "created_at": row["created_at"] + timedelta(seconds=1),
                    "processed_at": None,
                    "reply_to": inbound_id,
                    "status": "sent",
                    "transport_id": f"bulk-m-{inbound_id}",
                    "delivery_status": "DELIVRD",
                    "attempts": 1,
                }
                for row, inbound_id in zip(inbound_rows, ids, strict=True)
            ],
        )

    await gateway.store.run_transaction(write)


async def test_old_messages_go_recent_ones_pending_ones_and_readings_stay(gateway, clock):
    """Old inbound with their sent or failed replies (receipts on them), old parts,
    confirmations and login failures are pruned; recent traffic, an old reply still
    pending (and its inbound), an old inbound never processed, a part received a
    minute ago and every reading stay exactly as they were."""
    history = await _history(gateway, clock)
    readings_before = await _readings(gateway)
    assert 2 == len(readings_before)  # one old booking, one recent

    counts = await prune(gateway.store, KEEP, now=PRUNE_AT, batch_size=3, pause_s=0)

    assert (6, 2, 1, 1) == (
        counts.messages,
        counts.inbound_parts,
        counts.pending_confirmations,
        counts.ops_login_failures,
    )
    assert history.kept_message_ids == await _message_ids(gateway)
    # The old booking stays, naming an inbound SMS that is gone.
    assert readings_before == await _readings(gateway)
    async with gateway.store.reader() as tx:
        inbound_ids = (await tx.conn.execute(select(readings.c.inbound_id))).scalars().all()
    assert set(inbound_ids) & history.pruned_message_ids
    async with gateway.store.reader() as tx:
        groups = (await tx.conn.execute(select(inbound_parts.c.group_key))).scalars().all()
        addresses = (await tx.conn.execute(select(ops_login_failures.c.address))).scalars().all()
    assert (["live-group"], ["10.0.0.2"]) == (list(groups), list(addresses))
    assert 1 == await _count(gateway, pending_confirmations)  # the recent one
    again = await prune(gateway.store, KEEP, now=PRUNE_AT, batch_size=3, pause_s=0)
    assert PruneCounts(batches=again.batches) == again  # what stays, stays


async def test_a_dry_run_counts_what_the_prune_then_deletes_and_deletes_nothing(gateway, clock):
    await _history(gateway, clock)
    before = await _counts(gateway)
    would = await prune(gateway.store, KEEP, now=PRUNE_AT, batch_size=2, pause_s=0, dry_run=True)
    assert before == await _counts(gateway)
    did = await prune(gateway.store, KEEP, now=PRUNE_AT, batch_size=2, pause_s=0)
    assert (6, 2, 1, 1) == (
        did.messages,
        did.inbound_parts,
        did.pending_confirmations,
        did.ops_login_failures,
    )
    assert would == did


async def test_a_reply_newer_than_the_cutoff_keeps_its_old_inbound(gateway, clock):
    """An inbound recovered long after it arrived has a recent reply: both stay, since
    the reply is inside the retention period and needs its inbound."""
    old = await gateway.pipeline.accept(_sms("+79160000004", "ПОМОЩЬ", clock(), "late"))
    clock.now = RECENT
    reply = await gateway.pipeline.process(old)
    await gateway.outbox.mark_sent_many(
        [(o.id, "m-late") for o in await gateway.outbox.claim("smpp", 10)]
    )

    counts = await prune(gateway.store, KEEP, now=PRUNE_AT, pause_s=0)

    assert 0 == counts.messages
    assert {old.inbound_id, reply.outbound_id} == await _message_ids(gateway)


async def test_old_rows_go_in_transactions_of_the_batch_size(gateway, monkeypatch):
    """12,000 old rows with batches of 1000: a dozen transactions or more, none
    deleting more than two batches' worth (a window of rows and their replies)."""
    await _write_old_log(gateway, 6000)
    deleted_per_transaction: list[int] = []
    real = gateway.store.run_transaction

    async def spy(work, ride_along=False):
        def counted(conn):
            count = select(func.count()).select_from(messages)
            before = conn.execute(count).scalar_one()
            result = work(conn)
            deleted_per_transaction.append(before - conn.execute(count).scalar_one())
            return result

        return await real(counted, ride_along=ride_along)

    monkeypatch.setattr(gateway.store, "run_transaction", spy)
    counts = await prune(gateway.store, KEEP, now=PRUNE_AT, batch_size=1000, pause_s=0)

    assert 12_000 == counts.messages == sum(deleted_per_transaction)
    assert len([n for n in deleted_per_transaction if n]) >= 12
    assert max(deleted_per_transaction) <= 2000
    assert 0 == await _count(gateway, messages)


async def test_sms_keep_being_answered_while_old_messages_are_pruned(gateway, clock):
    """SMS handled one after another during a prune of 12,000 rows are answered while
    part of the old rows is gone and part is still there: the prune commits batch by
    batch and the pipeline's transactions go in between (a prune in one transaction
    would be seen all or nothing). The readings booked stay."""
    await gateway.pipeline.handle(_sms("+79161234567", "1234567833 1234", clock(), "old"))
    [reply] = await gateway.outbox.claim("smpp", 10)
    await gateway.outbox.mark_sent(reply.id, "m-old")
    await _write_old_log(gateway, 6000)
    old_rows = 12_002  # the bulk, and the old booking's SMS and reply
    clock.now = RECENT
    readings_before = await _readings(gateway)
    pruning = asyncio.create_task(
        prune(gateway.store, KEEP, now=PRUNE_AT, batch_size=1000, pause_s=0.01)
    )
    answered_mid_prune = 0
    handled_ids: set[int] = set()
    number = 0
    while not pruning.done():
        number += 1
        reply = await gateway.pipeline.handle(
            _sms(f"+7903{number:07d}", "ПОМОЩЬ", RECENT, f"during-{number}")
        )
        assert reply.text is not None
        handled_ids |= {reply.inbound_id, reply.outbound_id}
        old_left = await _count(gateway, messages) - len(handled_ids)
        answered_mid_prune += 0 < old_left < old_rows
    counts = await pruning

    assert answered_mid_prune >= 3, f"{answered_mid_prune} of {number} in {counts.batches}"
    assert old_rows == counts.messages
    assert handled_ids == await _message_ids(gateway)
    assert readings_before == await _readings(gateway)


async def test_the_loop_prunes_and_logs_the_counts(gateway, clock):
    """prune_loop's first round uses `[database] keep_messages_days` (400) and the
    gateway's clock, and logs one line with the counts; cancelling ends it."""
    await _history(gateway, clock)
    clock.now = PRUNE_AT
    with capture_logs() as logs:
        loop = asyncio.create_task(prune_loop(gateway, first_after_s=0, every_s=3600))
        for _ in range(500):
            if any(entry["event"] == "pruned" for entry in logs):
                break
            await asyncio.sleep(0.02)
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop
    pruned = [entry for entry in logs if entry["event"] == "pruned"]
    assert 1 == len(pruned)
    assert (400, False, 6, 2, 1, 1) == tuple(
        pruned[0][key]
        for key in (
            "keep_days",
            "dry_run",
            "messages",
            "inbound_parts",
            "pending_confirmations",
            "ops_login_failures",
        )
    )


async def test_cli_prune_dry_run_then_prune(gateway, db_url, tmp_path):
    """`sms-gateway db prune --dry-run` prints what would go and deletes nothing;
    without it the same rows go."""
    # Older than 30 days before today, whatever today is.
    await _write_old_log(gateway, 5, start=datetime(2020, 1, 10, 8, 0))
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[gateway]\nlocale = "en"\n[database]\nurl = "{db_url}"\nupgrade_on_start = false\n',
        encoding="utf-8",
    )

    async def cli(*args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sms_gateway",
            "db",
            "prune",
            "--config",
            str(config),
            *args,
            cwd=ROOT,
            env={**os.environ, "SMS_GATEWAY__GATEWAY__LOG_FORMAT": "console"},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        assert 0 == process.returncode, err.decode()
        return out.decode()

    dry = await cli("--days", "30", "--dry-run")
    assert dry.startswith("would prune what is older than 30 days: 10 messages, 0 inbound parts")
    assert 10 == await _count(gateway, messages)
    done = await cli("--days", "30")
    assert done.startswith("pruned what is older than 30 days: 10 messages, 0 inbound parts")
    assert 0 == await _count(gateway, messages)
