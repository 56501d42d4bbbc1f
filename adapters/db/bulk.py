"""Bulk work for ops: importing the accounts CSV and exporting readings for billing.

Import validates the whole file first and reports every bad line; only a clean
file is written, in batches inside one transaction, so a failure leaves nothing
half-imported.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TextIO

from sqlalchemy import func, select, tuple_

from adapters.db.schema import account_phones, accounts, meters, readings
from adapters.db.store import SqlStore, from_db_time, to_db_time, upsert_into
from sms_gateway.errors import ImportFileError
from sms_gateway.phones import InvalidPhone, normalize_phone

ACCOUNT_COLUMNS = (
    "account",
    "meter_serial",
    "zones",
    "digits",
    "phones",
    "last_t1",
    "last_t2",
    "last_t3",
    "last_read_on",
)
EXPORT_COLUMNS = (
    "account",
    "meter_serial",
    "period",
    "t1",
    "t2",
    "t3",
    "status",
    "submitted_at",
    "channel",
)
BATCH_ROWS = 2000
MAX_REPORTED_PROBLEMS = 50
_SERIAL = re.compile(r"[0-9A-Za-z\-]{1,32}")
_PERIOD = re.compile(r"\d{4}-(0[1-9]|1[0-2])")

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class MeterRow:
    line: int
    account: str
    serial: str
    zones: int
    digits: int
    phones: tuple[str, ...]
    last_values: tuple[int | None, int | None, int | None]
    last_read_on: date | None


@dataclass(slots=True)
class ImportCounts:
    rows: int = 0
    accounts_created: int = 0
    meters_created: int = 0
    meters_updated: int = 0
    phones_added: int = 0
    problems: list[str] = field(default_factory=list)


def _parse_row(
    line: int, row: dict[str, str], account_pattern: re.Pattern[str], problems: list[str]
) -> MeterRow | None:
    found: list[str] = []
    account = (row.get("account") or "").strip().upper()
    if not account:
        found.append("account is empty")
    elif not account_pattern.fullmatch(account):
        found.append(f"account {account!r} does not match [gateway] account_pattern")
    serial = (row.get("meter_serial") or "").strip()
    if not _SERIAL.fullmatch(serial):
        found.append(f"meter_serial {serial!r} must be 1-32 letters, digits or '-'")
    zones = _int(row.get("zones"), "zones", found)
    if zones is not None and zones not in (1, 2, 3):
        found.append(f"zones must be 1, 2 or 3, got {zones}")
        zones = None
    digits = _int(row.get("digits"), "digits", found)
    if digits is not None and not 1 <= digits <= 9:
        found.append(f"digits must be 1..9, got {digits}")
        digits = None
    phones: list[str] = []
    for raw in (row.get("phones") or "").split(";"):
        if raw.strip():
            try:
                phones.append(normalize_phone(raw))
            except InvalidPhone:
                found.append(f"phone {raw.strip()!r} is not a phone number")
    last: list[int | None] = []
    for zone in (1, 2, 3):
        text = (row.get(f"last_t{zone}") or "").strip()
        value = _int(text, f"last_t{zone}", found) if text else None
        if value is not None and value < 0:
            found.append(f"last_t{zone} must not be negative")
        if zones is not None and zone > zones and value is not None:
            found.append(f"last_t{zone} given for a {zones}-zone meter")
        if value is not None and digits is not None and value >= 10**digits:
            found.append(f"last_t{zone} {value} is wider than {digits} digits")
        last.append(value)
    read_on_text = (row.get("last_read_on") or "").strip()
    read_on = None
    if read_on_text:
        try:
            read_on = date.fromisoformat(read_on_text)
        except ValueError:
            found.append(f"last_read_on {read_on_text!r} is not YYYY-MM-DD")
    if zones is not None:
        present = [v is not None for v in last[:zones]]
        if any(present) and not all(present):
            found.append(f"give all {zones} last_t values or none")
        if all(present) and not read_on_text:
            found.append("last_read_on is required with last_t values")
    if found:
        problems.append(f"line {line}: " + "; ".join(found))
        return None
    assert zones is not None and digits is not None
    return MeterRow(
        line, account, serial, zones, digits, tuple(phones), (last[0], last[1], last[2]), read_on
    )


def _int(text: str | None, name: str, found: list[str]) -> int | None:
    value = (text or "").strip()
    if not re.fullmatch(r"-?\d+", value):
        found.append(f"{name} must be a whole number, got {value!r}")
        return None
    return int(value)


def read_accounts_csv(path: Path, account_pattern: str) -> list[MeterRow]:
    """Every row of the file, validated; ImportFileError lists the bad lines."""
    pattern = re.compile(account_pattern)
    problems: list[str] = []
    rows: list[MeterRow] = []
    seen: dict[tuple[str, str], int] = {}
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise ImportFileError([f"{path}: {exc.strerror}"]) from exc
    with handle:
        try:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [c for c in ACCOUNT_COLUMNS if c not in header]
            if missing:
                raise ImportFileError(
                    [f"line 1: header lacks column(s) {', '.join(missing)}; "
                     f"expected {','.join(ACCOUNT_COLUMNS)}"]
                )  # fmt: skip
            for row in reader:
                line = reader.line_num
                if None in row:
                    problems.append(f"line {line}: more fields than the header has")
                    continue
                parsed = _parse_row(line, row, pattern, problems)
                if parsed is None:
                    continue
                key = (parsed.account, parsed.serial)
                if key in seen:
                    problems.append(
                        f"line {line}: meter {parsed.serial} of account {parsed.account} "
                        f"already on line {seen[key]}"
                    )
                    continue
                seen[key] = line
                rows.append(parsed)
        except UnicodeDecodeError as exc:
            raise ImportFileError([f"{path}: not UTF-8 ({exc.reason})"]) from exc
        except csv.Error as exc:
            raise ImportFileError([f"line {reader.line_num}: {exc}"]) from exc
    if problems:
        shown = problems[:MAX_REPORTED_PROBLEMS]
        if len(problems) > len(shown):
            shown.append(f"... and {len(problems) - len(shown)} more bad lines")
        raise ImportFileError(shown)
    if not rows:
        raise ImportFileError(["the file has no rows after the header"])
    return rows


def _batches(rows: list[MeterRow], size: int) -> Iterator[list[MeterRow]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


async def import_accounts(
    store: SqlStore,
    path: Path,
    account_pattern: str,
    now: datetime,
    progress: Progress | None = None,
) -> ImportCounts:
    """Upsert accounts, meters and phones from the CSV; all or nothing."""
    rows = read_accounts_csv(path, account_pattern)
    counts = ImportCounts(rows=len(rows))
    created_at = to_db_time(now)
    async with store.transaction() as tx:
        conn = tx.conn
        for batch in _batches(rows, BATCH_ROWS):
            account_ids = sorted({r.account for r in batch})
            existing_accounts = set(
                (
                    await conn.execute(
                        select(accounts.c.account).where(accounts.c.account.in_(account_ids))
                    )
                ).scalars()
            )
            new_accounts = [a for a in account_ids if a not in existing_accounts]
            if new_accounts:
                await conn.execute(
                    upsert_into(conn, accounts).on_conflict_do_nothing(),
                    [{"account": a, "created_at": created_at} for a in new_accounts],
                )
            counts.accounts_created += len(new_accounts)

            keys = [(r.account, r.serial) for r in batch]
            existing_meters = {
                (row.account, row.serial)
                for row in await conn.execute(
                    select(meters.c.account, meters.c.serial).where(
                        tuple_(meters.c.account, meters.c.serial).in_(keys)
                    )
                )
            }
            counts.meters_updated += len(existing_meters)
            counts.meters_created += len(batch) - len(existing_meters)
            meter_values = [
                {
                    "account": r.account,
                    "serial": r.serial,
                    "zones": r.zones,
                    "digits": r.digits,
                    "last_t1": r.last_values[0],
                    "last_t2": r.last_values[1],
                    "last_t3": r.last_values[2],
                    "last_read_on": r.last_read_on,
                }
                for r in batch
            ]
            upsert = upsert_into(conn, meters)
            upsert = upsert.on_conflict_do_update(
                index_elements=[meters.c.account, meters.c.serial],
                set_={
                    name: upsert.excluded[name]
                    for name in ("zones", "digits", "last_t1", "last_t2", "last_t3", "last_read_on")
                },
            )
            await conn.execute(upsert, meter_values)

            phone_rows = {(r.account, p) for r in batch for p in r.phones}
            if phone_rows:
                existing_phones = {
                    (row.account, row.phone)
                    for row in await conn.execute(
                        select(account_phones.c.account, account_phones.c.phone).where(
                            tuple_(account_phones.c.account, account_phones.c.phone).in_(
                                sorted(phone_rows)
                            )
                        )
                    )
                }
                new_phones = sorted(phone_rows - existing_phones)
                if new_phones:
                    await conn.execute(
                        upsert_into(conn, account_phones).on_conflict_do_nothing(),
                        [
                            {"account": a, "phone": p, "source": "import", "created_at": created_at}
                            for a, p in new_phones
                        ],
                    )
                counts.phones_added += len(new_phones)
            if progress is not None:
                progress(min(len(rows), batch[-1].line - 1), len(rows))
    return counts


def _validate_period(period: str) -> None:
    if not _PERIOD.fullmatch(period):
        raise ValueError(f"period must be YYYY-MM, got {period!r}")


async def count_readings(store: SqlStore, period: str) -> int:
    _validate_period(period)
    async with store.reader() as tx:
        result = await tx.conn.execute(
            select(func.count()).select_from(readings).where(readings.c.period == period)
        )
        return int(result.scalar_one())


async def export_readings(
    store: SqlStore, period: str, out: TextIO, progress: Progress | None = None
) -> int:
    """Write the period's readings as CSV to `out`; returns the number of rows."""
    _validate_period(period)
    total = await count_readings(store, period) if progress is not None else 0
    written = 0
    async for chunk, rows in readings_csv_chunks(store, period):
        out.write(chunk)
        written += rows
        if progress is not None and rows:
            progress(written, total)
    if progress is not None:
        progress(written, total)
    return written


async def readings_csv_chunks(store: SqlStore, period: str) -> AsyncIterator[tuple[str, int]]:
    """The export CSV in pieces of up to BATCH_ROWS rows: (text, rows in it).

    The header comes first, alone. Rows are read with a server-side cursor, so a
    month of a big utility never sits in memory whole (the ops API streams these).
    """
    _validate_period(period)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    yield buffer.getvalue(), 0
    stmt = (
        select(
            meters.c.account,
            meters.c.serial,
            readings.c.period,
            readings.c.t1,
            readings.c.t2,
            readings.c.t3,
            readings.c.status,
            readings.c.submitted_at,
            readings.c.channel,
        )
        .join(meters, meters.c.id == readings.c.meter_id)
        .where(readings.c.period == period)
        .order_by(meters.c.account, meters.c.serial)
    )
    async with store.reader() as tx:
        result = await tx.conn.stream(stmt.execution_options(yield_per=BATCH_ROWS))
        async for partition in result.partitions():
            buffer.seek(0)
            buffer.truncate()
            for row in partition:
                submitted = from_db_time(row.submitted_at)
                writer.writerow(
                    [
                        row.account,
                        row.serial,
                        row.period,
                        row.t1,
                        "" if row.t2 is None else row.t2,
                        "" if row.t3 is None else row.t3,
                        row.status,
                        submitted.isoformat(timespec="seconds"),
                        row.channel,
                    ]
                )
            yield buffer.getvalue(), len(partition)
