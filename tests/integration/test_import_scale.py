"""Accounts import at scale: deltas, prune, all-or-nothing, streamed sources, one import
at a time, and SMS answered while an import writes; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, text

from adapters.db.bulk import (
    ImportBusy,
    ImportProblem,
    ImportRejected,
    PruneRefused,
    import_accounts,
)
from adapters.db.schema import account_phones, accounts, meters, readings
from sms_gateway.domain.model import InboundSms

HEADER = "account,meter_serial,zones,digits,phones,last_t1,last_t2,last_t3,last_read_on\n"
NOW = datetime(2026, 11, 18, 9, 0, tzinfo=UTC)
PATTERN = r"\d{10,12}|[A-Z]{2,4}\d{3,10}"


def _rows(count: int, first: int = 0, changed: frozenset[int] = frozenset()) -> list[str]:
    """`count` meters, a third two-zone, half with a phone; `changed` get a new reading."""
    out = []
    for i in range(first, first + count):
        zones = 2 if i % 3 == 0 else 1
        t1, read_on = (1500, "2026-11-05") if i in changed else (1000, "2026-10-20")
        last = f"{t1},500," if zones == 2 else f"{t1},,"
        phone = f"+7926{i:07d}" if i % 2 == 0 else ""
        out.append(f"{8_000_000_000 + i},{50_000_000 + i},{zones},6,{phone},{last},{read_on}\n")
    return out


async def _snapshot(gateway) -> tuple:
    """Every row of the three tables an import writes."""
    async with gateway.store.reader() as tx:
        out = []
        for table in (accounts, meters, account_phones):
            rows = await tx.conn.execute(select(table).order_by(*table.primary_key.columns))
            out.append(tuple(tuple(row) for row in rows))
        return tuple(out)


async def _meter_versions(gateway) -> dict[int, object]:
    """A per-row value that changes whenever a meter row is written: PostgreSQL's
    xmin, and on SQLite a counter kept by a trigger the test installs."""
    async with gateway.store.transaction() as tx:
        if tx.conn.dialect.name == "postgresql":
            rows = await tx.conn.execute(text("SELECT id, xmin::text FROM meters"))
        else:
            rows = await tx.conn.execute(text("SELECT meter_id, writes FROM meter_writes"))
        return {int(row[0]): row[1] for row in rows}


async def _count_meter_writes_on_sqlite(gateway) -> None:
    async with gateway.store.transaction() as tx:
        if tx.conn.dialect.name != "sqlite":
            return
        await tx.conn.execute(
            text("CREATE TABLE meter_writes (meter_id INTEGER PRIMARY KEY, writes INTEGER)")
        )
        for event in ("INSERT", "UPDATE"):
            await tx.conn.execute(
                text(
                    f"CREATE TRIGGER meter_{event.lower()} AFTER {event} ON meters BEGIN "
                    "INSERT INTO meter_writes VALUES (NEW.id, 1) ON CONFLICT (meter_id) "
                    "DO UPDATE SET writes = writes + 1; END"
                )
            )


@pytest.fixture
async def empty_gateway(db_url, settings_for, gateway_factory):
    return await gateway_factory(settings_for(db_url), demo=False)


async def test_a_nightly_delta_writes_only_the_changed_rows(empty_gateway, tmp_path):
    """2,000 meters, then the same file with 20 new readings, 5 new meters of a new
    account and a new phone: the counts say so, and only those rows are written."""
    await _count_meter_writes_on_sqlite(empty_gateway)
    path = tmp_path / "full.csv"
    path.write_text(HEADER + "".join(_rows(2000)), encoding="utf-8")
    first = await import_accounts(empty_gateway.store, path, PATTERN, NOW)
    assert (1000, 1000) == (first.phones_added, first.phones_unchanged + 1000)
    before = await _meter_versions(empty_gateway)

    changed = frozenset(range(7, 2000, 100))
    lines = _rows(2000, changed=changed)
    lines[1] = lines[1].replace(",1,6,,", ",1,6,+79031234567,")  # row 1 had no phone
    new_account = [f"9000000001,{serial},1,5,,,,,\n" for serial in range(1, 6)]
    path.write_text(HEADER + "".join(lines + new_account), encoding="utf-8")
    delta = await import_accounts(empty_gateway.store, path, PATTERN, NOW)

    assert 2005 == delta.rows
    assert (1, 0, 2000, 0) == (
        delta.accounts_created,
        delta.accounts_updated,
        delta.accounts_unchanged,
        delta.accounts_closed,
    )
    assert (5, 20, 1980, 0) == (
        delta.meters_created,
        delta.meters_updated,
        delta.meters_unchanged,
        delta.meters_closed,
    )
    assert (1, 1000) == (delta.phones_added, delta.phones_unchanged)
    after = await _meter_versions(empty_gateway)
    rewritten = {meter_id for meter_id, version in before.items() if after[meter_id] != version}
    assert 20 == len(rewritten)
    assert 2005 == len(after)
    async with empty_gateway.store.reader() as tx:
        serials = set(
            (
                await tx.conn.execute(select(meters.c.serial).where(meters.c.id.in_(rewritten)))
            ).scalars()
        )
    assert {str(50_000_000 + i) for i in changed} == serials


async def test_prune_closes_what_the_file_no_longer_lists(
    db_url, settings_for, gateway_factory, tmp_path
):
    """--prune closes the accounts and meters a full file leaves out: their SMS are
    answered as for an unknown account, their readings stay; listed again, they are
    reopened. (2 of the 7 meters: above the default share, so the limit is raised.)"""
    gateway = await gateway_factory(settings_for(db_url))

    async def send(text: str, phone: str = "+79990000001") -> str:
        reply = await gateway.pipeline.handle(
            InboundSms("cli", phone, "7377", text, NOW, dedupe_key=f"{phone}:{text}")
        )
        return str(reply.outcome)

    assert "accepted" == await send("7770003334 900 700 1600")
    everything = (
        HEADER
        + "1234567833,00112233,1,5,+79161234567,1184,,,2026-10-20\n"
        + "5550001112,12345678,2,5,8 (916) 765-43-21,5400,2100,,2026-10-20\n"
        + "7770003334,77001234,3,6,,850,610,1500,2026-10-20\n"
        + "4440005556,44005678,1,5,79031112233,3000,,,2026-10-18\n"
        + "4440005556,44009999,2,5,79031112233,7000,3000,,2026-10-18\n"
        + "121000000000,56300563,1,4,,500,,,2026-10-22\n"
        + "ACC123,ACC-001,1,6,,45000,,,2026-10-21\n"
    )
    without = "".join(
        line for line in everything.splitlines(keepends=True) if not line.startswith("7770003334")
    ).replace("4440005556,44009999,2,5,79031112233,7000,3000,,2026-10-18\n", "")
    path = tmp_path / "billing.csv"
    path.write_text(without, encoding="utf-8")

    # Without --prune nothing is closed.
    kept = await import_accounts(gateway.store, path, PATTERN, NOW)
    assert (0, 0) == (kept.accounts_closed, kept.meters_closed)

    pruned = await import_accounts(
        gateway.store, path, PATTERN, NOW, prune=True, prune_max_share=0.3
    )
    assert (1, 2) == (pruned.accounts_closed, pruned.meters_closed)
    assert (0, 0, 5) == (
        pruned.accounts_created,
        pruned.accounts_updated,
        pruned.accounts_unchanged,
    )
    assert "unknown_account" == await send("7770003334 901 701 1601")
    # The account's other meter is still served, and now it is the only one.
    assert "accepted" == await send("4440005556 3100", phone="+79031112233")
    async with gateway.store.reader() as tx:
        history = (
            await tx.conn.execute(
                select(func.count())
                .select_from(readings.join(meters))
                .where(meters.c.account == "7770003334")
            )
        ).scalar_one()
    assert 1 == history

    # A second prune finds nothing more to close.
    again = await import_accounts(gateway.store, path, PATTERN, NOW, prune=True)
    assert (0, 0) == (again.accounts_closed, again.meters_closed)

    path.write_text(everything, encoding="utf-8")
    reopened = await import_accounts(gateway.store, path, PATTERN, NOW)
    assert (0, 1) == (reopened.accounts_created, reopened.accounts_updated)
    assert (0, 2) == (reopened.meters_created, reopened.meters_updated)
    assert "corrected" == await send("7770003334 902 702 1602")


async def test_a_prune_that_would_close_too_many_open_meters_is_refused(empty_gateway, tmp_path):
    """20 meters. A prune closing 2 of them (10 %, the default share) goes through; a
    file that would close 3 of the 18 still open (17 %), and change and add rows too,
    is refused with nothing written, saying how many and what share would let it
    through; with that share it goes through."""
    path = tmp_path / "billing.csv"
    rows = _rows(20)
    path.write_text(HEADER + "".join(rows), encoding="utf-8")
    await import_accounts(empty_gateway.store, path, PATTERN, NOW)

    path.write_text(HEADER + "".join(rows[2:]), encoding="utf-8")
    within = await import_accounts(empty_gateway.store, path, PATTERN, NOW, prune=True)
    assert (2, 2, 18) == (within.meters_closed, within.accounts_closed, within.meters_unchanged)

    truncated = _rows(15, first=5, changed=frozenset({6, 7})) + _rows(1, first=100)
    path.write_text(HEADER + "".join(truncated), encoding="utf-8")
    before = await _snapshot(empty_gateway)
    with pytest.raises(PruneRefused) as caught:
        await import_accounts(empty_gateway.store, path, PATTERN, NOW, prune=True)
    refused = caught.value
    assert (3, 18, 3, 0.1, 0.17) == (
        refused.meters_to_close,
        refused.open_meters,
        refused.accounts_to_close,
        refused.max_share,
        refused.share_needed,
    )
    assert [
        "the file would close 3 of 18 open meters (16.7 %) and 3 accounts, more than the "
        "limit of 10 % ([billing] prune_max_share). A truncated or partial file? If it is "
        "billing's full list, run again with --prune-max-share 0.17 (over HTTP: "
        "prune_max_share=0.17)"
    ] == refused.problems
    assert before == await _snapshot(empty_gateway)

    forced = await import_accounts(
        empty_gateway.store, path, PATTERN, NOW, prune=True, prune_max_share=0.17
    )
    assert (3, 3, 1, 2) == (
        forced.meters_closed,
        forced.accounts_closed,
        forced.meters_created,
        forced.meters_updated,
    )
    # Without --prune the guard has nothing to say: absent meters are left alone.
    path.write_text(HEADER + "".join(rows[:1]), encoding="utf-8")
    plain = await import_accounts(empty_gateway.store, path, PATTERN, NOW)
    assert (0, 1) == (plain.meters_closed, plain.meters_updated)


async def test_a_bad_row_near_the_end_of_a_large_file_changes_nothing(empty_gateway, tmp_path):
    """50,000 rows imported; then a file changing many of them, adding more and asking
    for a prune, with one bad row near its end: rejected, every row as it was."""
    path = tmp_path / "full.csv"
    path.write_text(HEADER + "".join(_rows(50_000)), encoding="utf-8")
    await import_accounts(empty_gateway.store, path, PATTERN, NOW)
    before = await _snapshot(empty_gateway)

    lines = _rows(30_000, changed=frozenset(range(0, 30_000, 7))) + _rows(20_000, first=60_000)
    lines[49_988] = lines[49_988].replace(",2026-10-20", ",2026-13-40")
    path.write_text(HEADER + "".join(lines), encoding="utf-8")
    with pytest.raises(ImportRejected) as caught:
        await import_accounts(empty_gateway.store, path, PATTERN, NOW, prune=True)
    assert [ImportProblem(49_990, "last_read_on '2026-13-40' is not YYYY-MM-DD")] == (
        caught.value.shown
    )
    assert 1 == caught.value.total
    assert before == await _snapshot(empty_gateway)


async def test_many_bad_rows_report_the_first_hundred_and_the_total(sqlite_url, settings_for,
                                                                     gateway_factory, tmp_path):  # fmt: skip
    """Every fifth of 1,000 rows bad, and a meter twice: the first 100 problems by
    line, duplicates among them, and the number of all."""
    gateway = await gateway_factory(settings_for(sqlite_url), demo=False)
    lines = _rows(1000)
    for i in range(0, 1000, 5):
        lines[i] = lines[i].replace(",6,", ",12,", 1)
    lines.insert(3, lines[2])  # line 5 repeats line 4
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + "".join(lines), encoding="utf-8")
    with pytest.raises(ImportRejected) as caught:
        await import_accounts(gateway.store, path, PATTERN, NOW)
    shown = caught.value.shown
    assert 201 == caught.value.total
    assert 100 == len(shown)
    assert ImportProblem(2, "digits must be 1..9, got 12") == shown[0]
    assert ImportProblem(5, "meter 50000002 of account 8000000002 already on line 4") == shown[1]
    assert [p.line for p in shown] == sorted(p.line for p in shown)
    assert "... and 101 more bad lines" == caught.value.problems[-1]


async def test_a_streamed_body_imports_as_the_file_does(empty_gateway, tmp_path):
    """The file as bytes chunks of 7 (lines and a two-byte letter split across chunks),
    from an async iterator as an HTTP body arrives: the same counts as the file; a
    byte that is not UTF-8 is reported at its line."""
    body = (
        "note," + HEADER.replace("\n", "\r\n")
        + "".join(f"счёт,{line}".replace("\n", "\r\n") for line in _rows(300))
    ).encode()  # fmt: skip

    async def chunks(data: bytes) -> AsyncIterator[bytes]:
        for start in range(0, len(data), 7):
            yield data[start : start + 7]
            if start % 700 == 0:
                await asyncio.sleep(0)

    counts = await import_accounts(empty_gateway.store, chunks(body), PATTERN, NOW)
    assert (300, 300, 150) == (counts.rows, counts.meters_created, counts.phones_added)
    again = await import_accounts(
        empty_gateway.store, iter(body.decode().splitlines(keepends=True)), PATTERN, NOW
    )
    assert (0, 300) == (again.meters_created, again.meters_unchanged)

    broken = body.replace("счёт".encode(), b"\xff\xfe", 1)
    with pytest.raises(ImportRejected) as caught:
        await import_accounts(empty_gateway.store, chunks(broken), PATTERN, NOW)
    assert 2 == caught.value.shown[0].line
    assert caught.value.shown[0].message.startswith("not UTF-8")
    # A file is read the same way: the line of the bad byte, not of the block it is in.
    path = tmp_path / "broken.csv"
    path.write_bytes(
        body.replace("счёт".encode(), b"\xff", 250).replace(b"\xff", "счёт".encode(), 249)
    )
    with pytest.raises(ImportRejected) as caught:
        await import_accounts(empty_gateway.store, path, PATTERN, NOW)
    assert [ImportProblem(251, "not UTF-8 (invalid start byte)")] == caught.value.shown


async def test_a_second_import_is_refused_while_one_runs(empty_gateway):
    """ImportBusy for the second import while the first is still reading its body;
    the first then completes, and a third may run."""
    started, release = asyncio.Event(), asyncio.Event()

    async def slow_body() -> AsyncIterator[str]:
        yield HEADER
        started.set()
        await release.wait()
        for line in _rows(10):
            yield line

    first = asyncio.create_task(import_accounts(empty_gateway.store, slow_body(), PATTERN, NOW))
    await asyncio.wait_for(started.wait(), 10)
    with pytest.raises(ImportBusy):
        await import_accounts(empty_gateway.store, iter([HEADER, *_rows(1)]), PATTERN, NOW)
    release.set()
    assert 10 == (await first).meters_created
    third = await import_accounts(empty_gateway.store, iter([HEADER, *_rows(11)]), PATTERN, NOW)
    assert (1, 10) == (third.meters_created, third.meters_unchanged)


async def test_sms_are_answered_while_an_import_writes(sqlite_url, settings_for, gateway_factory,
                                                       tmp_path):  # fmt: skip
    """SQLite: a 120,000-meter import and an SMS every 20 ms through the pipeline. SMS
    are answered while the import writes (not only before or after it), none fails,
    none waits a second. (120,000: on a quiet machine the transactions grow to their
    25 ms target fast, and 60,000 meters then took only 10 of them.)"""
    gateway = await gateway_factory(settings_for(sqlite_url))
    path = tmp_path / "big.csv"
    path.write_text(HEADER + "".join(_rows(120_000)), encoding="utf-8")
    writes: list[float] = []

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "write":
            writes.append(time.monotonic())

    answered: list[tuple[float, float]] = []
    done = asyncio.Event()

    async def subscribers() -> None:
        number = 0
        while not done.is_set():
            number += 1
            sent = time.monotonic()
            await gateway.pipeline.handle(
                InboundSms(
                    "cli",
                    f"+7999{number:07d}",
                    "7377",
                    f"1234567833 {1200 + number % 50}",
                    NOW,
                    dedupe_key=f"sms-{number}",
                )
            )
            answered.append((sent, time.monotonic()))
            await asyncio.sleep(0.02)

    stream = asyncio.create_task(subscribers())
    try:
        counts = await import_accounts(gateway.store, path, PATTERN, NOW, progress=progress)
    finally:
        done.set()
        await stream
    assert 120_000 == counts.meters_created
    during = [(s, r) for s, r in answered if writes[0] < r < writes[-1]]
    assert len(writes) > 10
    assert len(during) >= 5, (len(answered), writes[-1] - writes[0])
    assert max(r - s for s, r in answered) < 1.0
