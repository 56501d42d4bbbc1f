"""Accounts CSV import and readings export, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from adapters.db.bulk import export_readings, import_accounts
from adapters.db.schema import account_phones, accounts, meters
from sms_gateway.errors import ImportFileError
from tests.conversation import run_script

HEADER = "account,meter_serial,zones,digits,phones,last_t1,last_t2,last_t3,last_read_on\n"
NOW = datetime(2026, 11, 18, 9, 0, tzinfo=UTC)
PATTERN = r"\d{10,12}|[A-Z]{2,4}\d{3,10}"


@pytest.fixture
async def empty_gateway(db_url, settings_for, gateway_factory):
    return await gateway_factory(settings_for(db_url), demo=False)


async def _counts(gateway):
    async with gateway.store.reader() as tx:
        return tuple(
            [
                (await tx.conn.execute(select(func.count()).select_from(table))).scalar_one()
                for table in (accounts, meters, account_phones)
            ]
        )


def _summary(counts):
    return {
        "accounts": (
            counts.accounts_created,
            counts.accounts_updated,
            counts.accounts_unchanged,
            counts.accounts_closed,
        ),
        "meters": (
            counts.meters_created,
            counts.meters_updated,
            counts.meters_unchanged,
            counts.meters_closed,
        ),
        "phones": (counts.phones_added, counts.phones_unchanged),
    }


async def test_import_then_upsert(empty_gateway, tmp_path):
    """A second import updates meters in place and adds only new phones."""
    path = tmp_path / "a.csv"
    path.write_text(
        HEADER
        + "0012345678,111,1,5,8 916 123-45-67;+7 (903) 111-22-33,100,,,2026-10-01\n"
        + "0012345678,222,2,6,,10,20,,2026-10-01\n"
        + "5550001112,333,3,5,79160000000,1,2,3,2026-10-01\n",
        encoding="utf-8",
    )
    first = await import_accounts(empty_gateway.store, path, PATTERN, NOW)
    assert 3 == first.rows
    assert {
        "accounts": (2, 0, 0, 0),
        "meters": (3, 0, 0, 0),
        "phones": (3, 0),
    } == _summary(first)
    path.write_text(
        HEADER
        + "0012345678,111,1,5,+79161234567,150,,,2026-10-05\n"
        + "0012345678,444,1,5,,,,,\n"
        + "0012345678,222,2,6,,10,20,,2026-10-01\n",
        encoding="utf-8",
    )
    second = await import_accounts(empty_gateway.store, path, PATTERN, NOW)
    assert 3 == second.rows
    assert {
        "accounts": (0, 0, 1, 0),
        "meters": (1, 1, 1, 0),
        "phones": (0, 1),
    } == _summary(second)
    assert await _counts(empty_gateway) == (2, 4, 3)
    async with empty_gateway.store.reader() as tx:
        loaded = await tx.load_accounts(["0012345678"])
    account = loaded["0012345678"]
    assert frozenset({"+79161234567", "+79031112233"}) == account.phones
    assert [(m.serial, m.last_values) for m in account.meters] == [
        ("111", (150,)),
        ("222", (10, 20)),
        ("444", None),
    ]


async def test_bad_file_is_rejected_with_line_numbers_and_nothing_imported(empty_gateway, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(
        HEADER
        + "1234567833,111,1,5,,100,,,2026-10-01\n"
        + "1234567833,112,4,5,,100,,,2026-10-01\n"
        + "12345,113,1,5,,100,,,2026-10-01\n"
        + "1234567834,114,2,5,not-a-phone,100,,,2026-10-01\n"
        + "1234567835,115,1,3,,1000,,,01.10.2026\n"
        + "1234567833,111,1,5,,100,,,2026-10-01\n",
        encoding="utf-8",
    )
    with pytest.raises(ImportFileError) as caught:
        await import_accounts(empty_gateway.store, path, PATTERN, NOW)
    assert caught.value.problems == [
        "line 3: zones must be 1, 2 or 3, got 4",
        "line 4: account '12345' does not match [gateway] account_pattern",
        "line 5: phone 'not-a-phone' is not a phone number; give all 2 last_t values or none",
        "line 6: last_t1 1000 is wider than 3 digits; last_read_on '01.10.2026' is not YYYY-MM-DD",
        "line 7: meter 111 of account 1234567833 already on line 2",
    ]
    assert await _counts(empty_gateway) == (0, 0, 0)


async def test_bad_header_is_rejected(empty_gateway, tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("account,serial\n1,2\n", encoding="utf-8")
    with pytest.raises(ImportFileError) as caught:
        await import_accounts(empty_gateway.store, path, PATTERN, NOW)
    assert caught.value.problems[0].startswith("line 1: header lacks column(s) meter_serial")


async def test_progress_is_reported_for_the_check_and_the_write(empty_gateway, tmp_path):
    """25,000 rows: the check counts rows up to the file's total, then the write counts
    up to its own total; both end complete."""
    path = tmp_path / "big.csv"
    rows = [f"{7000000000 + i},{i},1,6,,{i},,,2026-10-01\n" for i in range(25_000)]
    path.write_text(HEADER + "".join(rows), encoding="utf-8")
    seen: list[tuple[str, int, int]] = []
    counts = await import_accounts(
        empty_gateway.store, path, PATTERN, NOW, progress=lambda *a: seen.append(a)
    )
    assert (counts.accounts_created, counts.meters_created) == (25_000, 25_000)
    checks = [(done, total) for stage, done, total in seen if stage == "check"]
    writes = [(done, total) for stage, done, total in seen if stage == "write"]
    assert [10_000, 20_000, 25_000] == [done for done, _ in checks]
    assert {25_000} == {total for _, total in checks}
    assert writes[-1][0] == writes[-1][1]
    assert len(writes) > 1
    assert [stage for stage, *_ in seen] == sorted(stage for stage, *_ in seen)


async def test_export_lists_the_periods_readings(db_url, settings_for, gateway_factory, clock):
    gateway = await gateway_factory(settings_for(db_url))
    await run_script(
        gateway,
        clock,
        """
        79161234567 > 1234567833 1234
        < Приняты показания ЛС 1234567833: Т1 1234 (+50).
        79167654321 > 5550001112 5450 2130
        < Приняты показания ЛС 5550001112: Т1 5450 (+50), Т2 2130 (+30).
        @ 2026-11-27 09:00
        79161234567 > 1234567833 1300
        < Приняты в счёт за декабрь ЛС 1234567833: Т1 1300 (+66).
        """,
    )
    out = io.StringIO()
    written = await export_readings(gateway.store, "2026-11", out)
    assert written == 2
    assert out.getvalue() == (
        "account,meter_serial,period,t1,t2,t3,status,submitted_at,channel\n"
        "1234567833,00112233,2026-11,1234,,,accepted,2026-11-18T09:00:00+00:00,cli\n"
        "5550001112,12345678,2026-11,5450,2130,,accepted,2026-11-18T09:00:00+00:00,cli\n"
    )


async def test_export_times_are_utc_in_whole_seconds(db_url, settings_for, gateway_factory, clock):
    """The database formats submitted_at: UTC with its offset, the fraction cut off
    (not rounded up to the next second), on SQLite and PostgreSQL alike."""
    gateway = await gateway_factory(settings_for(db_url))
    clock.now = datetime(2026, 11, 18, 9, 0, 59, 999_999, tzinfo=UTC)
    await run_script(
        gateway,
        clock,
        "79161234567 > 1234567833 1234\n< Приняты показания ЛС 1234567833: Т1 1234 (+50).",
    )
    out = io.StringIO()
    await export_readings(gateway.store, "2026-11", out)
    assert (
        "1234567833,00112233,2026-11,1234,,,accepted,2026-11-18T09:00:59+00:00,cli"
        == (out.getvalue().splitlines()[1])
    )


async def test_export_rejects_a_bad_period(empty_gateway):
    with pytest.raises(ValueError, match="YYYY-MM"):
        await export_readings(empty_gateway.store, "2026-13", io.StringIO())
