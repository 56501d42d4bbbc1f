"""Bulk work for ops: importing the accounts CSV and exporting readings for billing.

An import runs in three steps, so that a bad file changes nothing and the SMS
pipeline never waits long behind it:

1. check and stage: the file is read as a stream (a path, or an iterator of text
   lines or bytes chunks, sync or async, as an HTTP body arrives) and every row is
   validated; good rows go into a private staging SQLite file, the problems are
   collected with their line numbers. Nothing in the gateway's database is touched,
   and memory does not grow with the file. Any problem rejects the whole file
   (`ImportRejected`).
2. diff: the staged rows are compared with the database, set-based, so only what
   changed is written: accounts, meters and phones created; meters updated;
   accounts reopened; with `prune`, accounts and meters billing no longer lists
   closed (never deleted: their history stays).
3. apply. PostgreSQL: the staged rows are COPYed into temporary tables and the
   differences applied in one transaction (row locks only, the pipeline reads and
   writes beside it). SQLite: the differences are applied in short transactions of
   whole accounts (about APPLY_BATCH_S each, with a pause as long after each), so
   the pipeline's commits interleave with the import's instead of waiting behind one
   long write lock (docs/operations.md, "How an import stays out of the SMS path").

One import at a time per database: a second one gets `ImportBusy`. A prune that
would close more than `prune_max_share` of the open meters (a truncated file) is
refused before anything is written (`PruneRefused`).

Problems are worded in the `locale` the caller passes (sms_gateway/texts.py): the
CLI's `[gateway] locale`; English by default, as the HTTP API answers.

    GatewayError
    ├── ImportFileError
    │   ├── ImportRejected      the file's problems, with line numbers; nothing imported
    │   └── PruneRefused        --prune would close too many open meters; nothing imported
    └── TemporaryFailure
        └── ImportBusy          another import of this database is running
    ValueError
    └── BadPeriod               an export period that is not YYYY-MM
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import csv
import fcntl
import functools
import io
import math
import operator
import os
import re
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, TextIO

import asyncpg
from sqlalchemy import Executable, column, func, select, text
from sqlalchemy.exc import DBAPIError

from adapters.db.schema import meters, readings
from adapters.db.store import SqlStore, to_db_time
from sms_gateway.config import BillingSettings
from sms_gateway.errors import ImportFileError, StoreUnavailable, TemporaryFailure
from sms_gateway.phones import InvalidPhone, normalize_phone
from sms_gateway.texts import EN, CliTexts, cli_texts

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
MAX_REPORTED_PROBLEMS = 100
# Rows written to the staging file per statement.
STAGE_BATCH_ROWS = 10_000
# SQLite: how long one apply transaction may hold the write lock, and the least pause
# after it. A waiting writer (the pipeline's, on busy_timeout) polls every few ms,
# then every 25-100 ms: a pause as long as the transaction lets it in between.
APPLY_BATCH_S = 0.025
APPLY_PAUSE_MIN_S = 0.002
# PostgreSQL: any key that other code does not take with pg_advisory_lock.
_PG_IMPORT_LOCK = 0x534D_5347_494D  # "SMSGIM"
_SERIAL = re.compile(r"[0-9A-Za-z\-]{1,32}")
_PERIOD = re.compile(r"\d{4}-(0[1-9]|1[0-2])")
# The usual spellings of a Russian mobile number in billing files: normalize_phone
# returns them unchanged (or with the '+'); phonenumbers would cost ~13 µs each.
_E164_RU = re.compile(r"\+7\d{10}")
_BARE_RU = re.compile(r"7\d{10}")
_ZONES = {"1": 1, "2": 2, "3": 3}
_DIGITS = {str(d): d for d in range(1, 10)}
# Which last_t values a meter of 1, 2 or 3 zones has.
_GIVEN = {1: (True, False, False), 2: (True, True, False), 3: (True, True, True)}

Progress = Callable[[int, int], None]
# (stage, done, total): stage "check" counts rows read (total 0 when unknown, as for
# a streamed body), "write" counts accounts written (SQLite) or steps (PostgreSQL).
ImportProgress = Callable[[str, int, int], None]
ImportSource = Path | Iterable[str] | Iterable[bytes] | AsyncIterable[str] | AsyncIterable[bytes]


class ImportBusy(TemporaryFailure):
    """Another import of this database is running; try again when it is done."""


@dataclass(frozen=True, slots=True)
class ImportProblem:
    line: int  # 1 is the header; 0 when the problem is the file as a whole
    message: str


class ImportRejected(ImportFileError):
    """The file's problems: the first MAX_REPORTED_PROBLEMS of them by line, and how
    many there are in all. Nothing was imported."""

    def __init__(self, shown: list[ImportProblem], total: int, words: CliTexts = EN) -> None:
        self.shown = shown
        self.total = total
        text = [
            words.at_line.format(line=p.line, problem=p.message) if p.line else p.message
            for p in shown
        ]
        if total > len(shown):
            text.append(words.more_bad_lines.format(count=words.number(total - len(shown))))
        super().__init__(words.file_rejected, text)


class PruneRefused(ImportFileError):
    """The prune would close more than `max_share` of the open meters: most likely a
    truncated or partial file. Nothing was imported."""

    def __init__(
        self, closing: int, open_meters: int, accounts: int, max_share: float, words: CliTexts
    ) -> None:
        self.meters_to_close = closing
        self.open_meters = open_meters
        self.accounts_to_close = accounts
        self.max_share = max_share
        # The least share in hundredths that lets this very prune through (rounded up,
        # in whole numbers: 29/100 must not come out as 0.28999...).
        self.share_needed = min(-(-closing * 100 // open_meters), 100) / 100
        why = words.prune_refused_why.format(
            closing=words.number(closing),
            open=words.number(open_meters),
            share=words.share(closing / open_meters),
            accounts=words.number(accounts),
            limit=words.share(max_share),
            suggest=f"{self.share_needed:g}",
        )
        super().__init__(words.prune_refused, [why])


class BadPeriod(ValueError):
    """An export period that is not YYYY-MM."""


@dataclass(frozen=True, slots=True)
class _Prune:
    """--prune and its guard: refused when it would close more than `max_share` of the
    meters open before the import (1.0: never)."""

    max_share: float
    words: CliTexts

    def check(self, closing: int, open_meters: int, accounts: int) -> None:
        # How many meters it may close; the epsilon keeps 0.29 * 100 at 29, not 28.
        allowed = math.floor(self.max_share * open_meters + 1e-9)
        if closing > allowed:
            raise PruneRefused(closing, open_meters, accounts, self.max_share, self.words)


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
    """What an import did. "updated" accounts are closed ones the file lists again;
    "unchanged" rows were left as they were, not rewritten; phones are only ever
    added (an existing phone counts as unchanged)."""

    rows: int = 0
    accounts_created: int = 0
    accounts_updated: int = 0
    accounts_unchanged: int = 0
    accounts_closed: int = 0
    meters_created: int = 0
    meters_updated: int = 0
    meters_unchanged: int = 0
    meters_closed: int = 0
    phones_added: int = 0
    phones_unchanged: int = 0
    seconds: float = 0.0


# -- checking one row -------------------------------------------------------------


def _parse_row(
    line: int,
    row: dict[str, str],
    account_pattern: re.Pattern[str],
    problems: list[str],
    words: CliTexts = EN,
) -> MeterRow | None:
    """The row, or None with every problem it has appended (the wording ops see)."""
    found: list[str] = []
    account = (row.get("account") or "").strip().upper()
    if not account:
        found.append(words.account_empty)
    elif not account_pattern.fullmatch(account):
        found.append(words.account_pattern.format(account=account))
    serial = (row.get("meter_serial") or "").strip()
    if not _SERIAL.fullmatch(serial):
        found.append(words.bad_serial.format(serial=serial))
    zones = _int(row.get("zones"), "zones", found, words)
    if zones is not None and zones not in (1, 2, 3):
        found.append(words.bad_zones.format(zones=zones))
        zones = None
    digits = _int(row.get("digits"), "digits", found, words)
    if digits is not None and not 1 <= digits <= 9:
        found.append(words.bad_digits.format(digits=digits))
        digits = None
    phones: list[str] = []
    for raw in (row.get("phones") or "").split(";"):
        if raw.strip():
            try:
                phones.append(normalize_phone(raw))
            except InvalidPhone:
                found.append(words.bad_file_phone.format(phone=raw.strip()))
    last: list[int | None] = []
    for zone in (1, 2, 3):
        column = f"last_t{zone}"
        text = (row.get(column) or "").strip()
        value = _int(text, column, found, words) if text else None
        if value is not None and value < 0:
            found.append(words.negative.format(column=column))
        if zones is not None and zone > zones and value is not None:
            found.append(words.beyond_zones.format(column=column, zones=zones))
        if value is not None and digits is not None and value >= 10**digits:
            found.append(words.too_wide.format(column=column, value=value, digits=digits))
        last.append(value)
    read_on_text = (row.get("last_read_on") or "").strip()
    read_on = None
    if read_on_text:
        try:
            read_on = date.fromisoformat(read_on_text)
        except ValueError:
            found.append(words.bad_date.format(text=read_on_text))
    if zones is not None:
        present = [v is not None for v in last[:zones]]
        if any(present) and not all(present):
            found.append(words.some_last_values.format(zones=zones))
        if all(present) and not read_on_text:
            found.append(words.date_required)
    if found:
        problems.append("; ".join(found))
        return None
    assert zones is not None and digits is not None
    return MeterRow(
        line, account, serial, zones, digits, tuple(phones), (last[0], last[1], last[2]), read_on
    )


def _int(text: str | None, name: str, found: list[str], words: CliTexts) -> int | None:
    value = (text or "").strip()
    if not re.fullmatch(r"-?\d+", value):
        found.append(words.not_whole.format(column=name, text=value))
        return None
    return int(value)


def _phone(raw: str) -> str:
    text = raw.strip()
    if _E164_RU.fullmatch(text):
        return text
    if _BARE_RU.fullmatch(text):
        return "+" + text
    return normalize_phone(text)


class _RowChecker:
    """Turns CSV records into staging tuples. A clean row takes the fast path (a few
    µs); a row it has doubts about goes through `_parse_row`, which decides and words
    the problems: the two cannot disagree on what is accepted."""

    def __init__(
        self, header: list[str], account_pattern: re.Pattern[str], words: CliTexts
    ) -> None:
        self.header = header
        self.width = len(header)
        self.pattern = account_pattern
        self.words = words
        self.pick = operator.itemgetter(*[header.index(name) for name in ACCOUNT_COLUMNS])
        self.dates: dict[str, str] = {}

    def check(self, line: int, fields: list[str]) -> tuple[tuple[Any, ...], list[str]] | str:
        """(staging row, phones) or the problem text."""
        if len(fields) > self.width:
            return self.words.extra_fields
        if len(fields) < self.width:
            fields = fields + [""] * (self.width - len(fields))
        fast = self._fast(line, fields)
        if fast is not None:
            return fast
        found: list[str] = []
        row = _parse_row(
            line, dict(zip(self.header, fields, strict=True)), self.pattern, found, self.words
        )
        if row is None:
            return found[0]
        return _staged(row), list(row.phones)

    def _fast(self, line: int, fields: list[str]) -> tuple[tuple[Any, ...], list[str]] | None:
        (account, serial, zones_text, digits_text, raw_phones, t1, t2, t3, read_on_text) = (
            self.pick(fields)
        )
        account = account.strip().upper()
        serial = serial.strip()
        zones = _ZONES.get(zones_text.strip())
        digits = _DIGITS.get(digits_text.strip())
        if (
            zones is None
            or digits is None
            or not self.pattern.fullmatch(account)
            or not _SERIAL.fullmatch(serial)
        ):
            return None
        texts = (t1.strip(), t2.strip(), t3.strip())
        last: list[int | None] = [None, None, None]
        read_on = None
        if texts[0] or texts[1] or texts[2]:
            # All of the meter's zones and none beyond, whole numbers within the digits.
            if (bool(texts[0]), bool(texts[1]), bool(texts[2])) != _GIVEN[zones]:
                return None
            limit = 10**digits
            for zone in range(zones):
                text = texts[zone]
                if not (text.isascii() and text.isdigit()):
                    return None
                value = int(text)
                if value >= limit:
                    return None
                last[zone] = value
            read_on = self.dates.get(read_on_text)
            if read_on is None:
                try:
                    read_on = date.fromisoformat(read_on_text.strip()).isoformat()
                except ValueError:
                    return None
                if len(self.dates) < 10_000:  # billing files carry few distinct dates
                    self.dates[read_on_text] = read_on
        elif read_on_text.strip():
            read_on = self.dates.get(read_on_text)
            if read_on is None:
                return None  # rare: let _parse_row check it
        phones: list[str] = []
        if raw_phones.strip():
            try:
                phones = [_phone(raw) for raw in raw_phones.split(";") if raw.strip()]
            except InvalidPhone:
                return None
        return (line, account, serial, zones, digits, last[0], last[1], last[2], read_on), phones


def _staged(row: MeterRow) -> tuple[Any, ...]:
    read_on = row.last_read_on.isoformat() if row.last_read_on else None
    return (row.line, row.account, row.serial, row.zones, row.digits, *row.last_values, read_on)


# -- reading the source -------------------------------------------------------------


class _SourceError(Exception):
    """The source is not UTF-8 at this line."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line = line
        self.reason = reason


def _lines_of_chunks(chunks: Iterable[str] | Iterable[bytes]) -> Iterator[str]:
    """Text lines, with their ends, from str or bytes chunks split anywhere."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    pending = ""
    lines_done = 0
    first = True
    for chunk in chunks:
        if isinstance(chunk, bytes):
            try:
                text = decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                bad_line = lines_done + pending.count("\n") + chunk[: exc.start].count(b"\n") + 1
                raise _SourceError(bad_line, exc.reason) from exc
        else:
            text = chunk
        if first and text:
            text = text.removeprefix("\ufeff")
            first = False
        pending += text
        if "\n" not in text:
            continue
        parts = pending.split("\n")
        pending = parts.pop()
        lines_done += len(parts)
        for part in parts:
            yield part + "\n"
    if pending:
        yield pending


def _sync_chunks(source: AsyncIterable[Any], loop: asyncio.AbstractEventLoop) -> Iterator[Any]:
    """An async source read from a worker thread, one chunk at a time, on its loop."""
    iterator = aiter(source)
    while True:
        future = asyncio.run_coroutine_threadsafe(_next_chunk(iterator), loop)
        done, chunk = future.result()
        if done:
            return
        yield chunk


async def _next_chunk(iterator: AsyncIterator[Any]) -> tuple[bool, Any]:
    try:
        return False, await anext(iterator)
    except StopAsyncIteration:
        return True, None


# -- stage 1: check and stage -------------------------------------------------------


class _Staging:
    """The file's good rows in a private SQLite file in the temp directory: the
    file is never held in memory, and the database diffs it set-based."""

    def __init__(self, directory: Path | None) -> None:
        handle, name = tempfile.mkstemp(prefix="smsgw-import-", suffix=".db", dir=directory)
        os.close(handle)
        self.path = Path(name)
        self.conn: sqlite3.Connection | None = None
        self.rows = 0
        self.accounts = 0
        self.phone_pairs = 0

    def open(self) -> sqlite3.Connection:
        if self.conn is None:
            # Scratch data: no journal, no fsync; rebuilt from the file on any failure.
            self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=OFF")
            self.conn.execute("PRAGMA synchronous=OFF")
            self.conn.execute("PRAGMA cache_size=-32768")
        return self.conn

    def close_connection(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def remove(self) -> None:
        self.close_connection()
        with contextlib.suppress(OSError):
            self.path.unlink()


_STAGE_TABLES = """
CREATE TABLE rows (line INTEGER, account TEXT, serial TEXT, zones INTEGER, digits INTEGER,
                   last_t1 INTEGER, last_t2 INTEGER, last_t3 INTEGER, last_read_on TEXT);
CREATE TABLE phones (line INTEGER, account TEXT, phone TEXT);
"""


def _stage(
    lines: Iterable[str],
    account_pattern: str,
    staging: _Staging,
    progress: ImportProgress | None,
    total_rows: int,
    words: CliTexts,
) -> None:
    """Check every row into `staging`; ImportRejected when any is bad."""
    pattern = re.compile(account_pattern)
    conn = staging.open()
    conn.executescript(_STAGE_TABLES)
    problems: list[ImportProblem] = []
    bad = 0
    reader = csv.reader(lines)
    try:
        header = next(reader, [])
        missing = [c for c in ACCOUNT_COLUMNS if c not in header]
        if missing:
            lacks = words.header_lacks.format(
                missing=", ".join(missing), expected=",".join(ACCOUNT_COLUMNS)
            )
            raise ImportRejected([ImportProblem(1, lacks)], 1, words)
        checker = _RowChecker(header, pattern, words)
        staged_rows: list[tuple[Any, ...]] = []
        staged_phones: list[tuple[int, str, str]] = []
        conn.execute("BEGIN")
        for fields in reader:
            if not fields:
                continue  # a blank line, as csv.DictReader skips it
            line = reader.line_num
            checked = checker.check(line, fields)
            if isinstance(checked, str):
                bad += 1
                if len(problems) < MAX_REPORTED_PROBLEMS:
                    problems.append(ImportProblem(line, checked))
                continue
            row, phones = checked
            staged_rows.append(row)
            for phone in phones:
                staged_phones.append((line, row[1], phone))
            if len(staged_rows) >= STAGE_BATCH_ROWS:
                _flush_stage(conn, staged_rows, staged_phones)
                staging.rows += len(staged_rows)
                staged_rows.clear()
                staged_phones.clear()
                if progress is not None:
                    progress("check", staging.rows + bad, total_rows)
        _flush_stage(conn, staged_rows, staged_phones)
        staging.rows += len(staged_rows)
        conn.execute("COMMIT")
    except _SourceError as exc:
        not_utf8 = words.not_utf8.format(reason=exc.reason)
        raise ImportRejected([ImportProblem(exc.line, not_utf8)], 1, words) from exc
    except UnicodeDecodeError as exc:  # a str source that was decoded lazily
        not_utf8 = words.not_utf8.format(reason=exc.reason)
        raise ImportRejected([ImportProblem(reader.line_num + 1, not_utf8)], 1, words) from exc
    except csv.Error as exc:
        unreadable = words.csv_unreadable.format(reason=exc)
        raise ImportRejected([ImportProblem(reader.line_num, unreadable)], 1, words) from exc
    if progress is not None:
        progress("check", staging.rows + bad, max(total_rows, staging.rows + bad))
    # The same meter twice: found by the index the diff needs anyway.
    conn.execute("CREATE INDEX rows_key ON rows (account, serial)")
    twice = conn.execute(
        """SELECT count(*) FROM rows r
           WHERE EXISTS (SELECT 1 FROM rows e
                         WHERE e.account = r.account AND e.serial = r.serial AND e.line < r.line)"""
    ).fetchone()[0]
    if twice:
        bad += twice
        for line, account, serial, first in conn.execute(
            """SELECT r.line, r.account, r.serial,
                      (SELECT min(e.line) FROM rows e
                       WHERE e.account = r.account AND e.serial = r.serial) AS first
               FROM rows r
               WHERE EXISTS (SELECT 1 FROM rows e WHERE e.account = r.account
                             AND e.serial = r.serial AND e.line < r.line)
               ORDER BY r.line LIMIT ?""",
            (MAX_REPORTED_PROBLEMS,),
        ):
            twice_text = words.meter_twice.format(serial=serial, account=account, first=first)
            problems.append(ImportProblem(line, twice_text))
    if bad:
        problems.sort(key=lambda p: p.line)
        raise ImportRejected(problems[:MAX_REPORTED_PROBLEMS], bad, words)
    if not staging.rows:
        raise ImportRejected([ImportProblem(0, words.no_rows)], 1, words)
    conn.execute("CREATE INDEX phones_key ON phones (account, phone)")
    staging.accounts = conn.execute("SELECT count(DISTINCT account) FROM rows").fetchone()[0]
    staging.phone_pairs = conn.execute(
        "SELECT count(*) FROM (SELECT DISTINCT account, phone FROM phones)"
    ).fetchone()[0]


def _flush_stage(
    conn: sqlite3.Connection, rows: list[tuple[Any, ...]], phones: list[tuple[int, str, str]]
) -> None:
    if rows:
        conn.executemany("INSERT INTO rows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    if phones:
        conn.executemany("INSERT INTO phones VALUES (?, ?, ?)", phones)


def _count_lines(path: Path) -> int:
    """Rows in the file, for the progress display (a fast pass over the bytes)."""
    count = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            count += chunk.count(b"\n")
    return max(count - 1, 0)


def _stage_source(
    source: ImportSource,
    account_pattern: str,
    staging: _Staging,
    progress: ImportProgress | None,
    loop: asyncio.AbstractEventLoop,
    words: CliTexts,
) -> None:
    if isinstance(source, Path):
        try:
            total = _count_lines(source) if progress is not None else 0
            handle = source.open("rb")
        except OSError as exc:
            unreadable = words.unreadable.format(path=source, reason=exc.strerror)
            raise ImportRejected([ImportProblem(0, unreadable)], 1, words) from exc
        # Bytes through the same decoder as a streamed body: a byte that is not UTF-8
        # is reported at its own line (a text file decodes lines ahead of the reader).
        with handle:
            blocks = iter(lambda: handle.read(1 << 16), b"")
            _stage(_lines_of_chunks(blocks), account_pattern, staging, progress, total, words)
        return
    chunks: Iterable[Any] = (
        _sync_chunks(source, loop) if isinstance(source, AsyncIterable) else source
    )
    _stage(_lines_of_chunks(chunks), account_pattern, staging, progress, 0, words)


# -- one import at a time -------------------------------------------------------------


@contextlib.contextmanager
def _sqlite_import_lock(database: Path, words: CliTexts) -> Iterator[None]:
    """A lock file beside the database: held by the process (and the open file) that
    imports, so a second import, from this process or another, is refused."""
    lock_path = database.with_name(database.name + ".import-lock")
    handle = lock_path.open("a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise ImportBusy(words.import_busy) from exc
        yield
    finally:
        handle.close()


# -- stage 2 and 3 on SQLite --------------------------------------------------------

# Run on the import's own connection with the staging file attached as `stage`, in
# one read transaction of the database (a WAL snapshot: no lock the pipeline waits
# for). Every table it writes is in the staging file. Accounts are compared whole:
# the apply below then writes all of an account's changes in one transaction.
_SQLITE_DIFF = """
CREATE TABLE stage.acc (account TEXT PRIMARY KEY) WITHOUT ROWID;
INSERT INTO stage.acc SELECT DISTINCT account FROM stage.rows;
CREATE TABLE stage.acc_new (account TEXT PRIMARY KEY) WITHOUT ROWID;
INSERT INTO stage.acc_new SELECT a.account FROM stage.acc a
  WHERE NOT EXISTS (SELECT 1 FROM main.accounts m WHERE m.account = a.account);
CREATE TABLE stage.acc_reopen (account TEXT PRIMARY KEY) WITHOUT ROWID;
INSERT INTO stage.acc_reopen SELECT m.account FROM stage.acc a
  JOIN main.accounts m ON m.account = a.account WHERE m.closed_at IS NOT NULL;
CREATE TABLE stage.met_new AS SELECT r.account, r.serial, r.zones, r.digits,
  r.last_t1, r.last_t2, r.last_t3, r.last_read_on FROM stage.rows r
  WHERE NOT EXISTS (SELECT 1 FROM main.meters m
                    WHERE m.account = r.account AND m.serial = r.serial)
  ORDER BY r.account;
CREATE INDEX stage.met_new_account ON met_new (account);
CREATE TABLE stage.met_upd AS SELECT m.id, r.account, r.zones, r.digits,
  r.last_t1, r.last_t2, r.last_t3, r.last_read_on FROM stage.rows r
  JOIN main.meters m ON m.account = r.account AND m.serial = r.serial
  WHERE m.zones IS NOT r.zones OR m.digits IS NOT r.digits
     OR m.last_t1 IS NOT r.last_t1 OR m.last_t2 IS NOT r.last_t2
     OR m.last_t3 IS NOT r.last_t3 OR m.last_read_on IS NOT r.last_read_on
     OR m.closed_at IS NOT NULL;
CREATE INDEX stage.met_upd_account ON met_upd (account);
CREATE TABLE stage.ph_new (account TEXT, phone TEXT, PRIMARY KEY (account, phone)) WITHOUT ROWID;
INSERT OR IGNORE INTO stage.ph_new SELECT p.account, p.phone FROM stage.phones p
  WHERE NOT EXISTS (SELECT 1 FROM main.account_phones x
                    WHERE x.account = p.account AND x.phone = p.phone);
CREATE TABLE stage.acc_close (account TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE stage.met_close (id INTEGER, account TEXT);
"""
_SQLITE_PRUNE = """
INSERT INTO stage.acc_close SELECT m.account FROM main.accounts m
  WHERE m.closed_at IS NULL
    AND NOT EXISTS (SELECT 1 FROM stage.acc a WHERE a.account = m.account);
INSERT INTO stage.met_close SELECT m.id, m.account FROM main.meters m
  WHERE m.closed_at IS NULL
    AND NOT EXISTS (SELECT 1 FROM stage.rows r
                    WHERE r.account = m.account AND r.serial = m.serial);
"""
_SQLITE_TOUCHED = """
CREATE INDEX stage.met_close_account ON met_close (account);
CREATE TABLE stage.touched (seq INTEGER PRIMARY KEY, account TEXT);
INSERT INTO stage.touched (account)
  SELECT account FROM stage.acc_new UNION SELECT account FROM stage.acc_reopen
  UNION SELECT account FROM stage.met_new UNION SELECT account FROM stage.met_upd
  UNION SELECT account FROM stage.ph_new UNION SELECT account FROM stage.acc_close
  UNION SELECT account FROM stage.met_close
  ORDER BY 1;
"""
# One apply transaction: every change of the accounts in (:lo, :hi].
_SQLITE_APPLY = (
    """INSERT INTO main.accounts (account, created_at)
       SELECT account, :now FROM stage.acc_new WHERE account > :lo AND account <= :hi""",
    """UPDATE main.accounts SET closed_at = NULL WHERE account IN
       (SELECT account FROM stage.acc_reopen WHERE account > :lo AND account <= :hi)""",
    """INSERT INTO main.meters (account, serial, zones, digits, last_t1, last_t2, last_t3,
                                last_read_on)
       SELECT account, serial, zones, digits, last_t1, last_t2, last_t3, last_read_on
       FROM stage.met_new WHERE account > :lo AND account <= :hi""",
    """UPDATE main.meters SET zones = u.zones, digits = u.digits, last_t1 = u.last_t1,
         last_t2 = u.last_t2, last_t3 = u.last_t3, last_read_on = u.last_read_on,
         closed_at = NULL
       FROM stage.met_upd u
       WHERE main.meters.id = u.id AND u.account > :lo AND u.account <= :hi""",
    # ON CONFLICT: the pipeline may have linked the same phone (REG) since the diff.
    """INSERT INTO main.account_phones (account, phone, source, created_at)
       SELECT account, phone, 'import', :now FROM stage.ph_new
       WHERE account > :lo AND account <= :hi
       ON CONFLICT DO NOTHING""",
    """UPDATE main.meters SET closed_at = :now WHERE closed_at IS NULL AND id IN
       (SELECT id FROM stage.met_close WHERE account > :lo AND account <= :hi)""",
    """UPDATE main.accounts SET closed_at = :now WHERE closed_at IS NULL AND account IN
       (SELECT account FROM stage.acc_close WHERE account > :lo AND account <= :hi)""",
)


def _sqlite_time(moment: datetime) -> str:
    # The text SQLAlchemy's SQLite DateTime stores and reads back.
    return to_db_time(moment).strftime("%Y-%m-%d %H:%M:%S.%f")


def _apply_sqlite(
    database: Path,
    staging: _Staging,
    now: datetime,
    prune: _Prune | None,
    progress: ImportProgress | None,
) -> ImportCounts:
    staging.close_connection()
    conn = sqlite3.connect(database, timeout=30, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA foreign_keys=ON")
        # The database's pages that the diff and the apply touch stay cached.
        conn.execute("PRAGMA cache_size=-65536")
        conn.execute("ATTACH DATABASE ? AS stage", (str(staging.path),))
        conn.execute("PRAGMA stage.journal_mode=OFF")
        conn.execute("PRAGMA stage.synchronous=OFF")

        def count(table: str) -> int:
            return int(conn.execute(f"SELECT count(*) FROM stage.{table}").fetchone()[0])

        conn.execute("BEGIN")
        _run_script(conn, _SQLITE_DIFF)
        if prune is not None:
            _run_script(conn, _SQLITE_PRUNE)
            # In the diff's snapshot, before the first write: a refused prune (closing
            # the connection ends the read transaction) has changed nothing.
            open_meters = conn.execute(
                "SELECT count(*) FROM main.meters WHERE closed_at IS NULL"
            ).fetchone()[0]
            prune.check(count("met_close"), open_meters, count("acc_close"))
        _run_script(conn, _SQLITE_TOUCHED)
        conn.execute("COMMIT")

        counts = ImportCounts(rows=staging.rows)
        counts.accounts_created = count("acc_new")
        counts.accounts_updated = count("acc_reopen")
        counts.accounts_unchanged = staging.accounts - counts.accounts_created
        counts.accounts_unchanged -= counts.accounts_updated
        counts.accounts_closed = count("acc_close")
        counts.meters_created = count("met_new")
        counts.meters_updated = count("met_upd")
        counts.meters_unchanged = staging.rows - counts.meters_created - counts.meters_updated
        counts.meters_closed = count("met_close")
        counts.phones_added = count("ph_new")
        counts.phones_unchanged = staging.phone_pairs - counts.phones_added
        _apply_sqlite_batches(conn, count("touched"), _sqlite_time(now), progress)
        return counts
    finally:
        conn.close()


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    # executescript would COMMIT first; the diff must stay in one read snapshot.
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _apply_sqlite_batches(
    conn: sqlite3.Connection, touched: int, now: str, progress: ImportProgress | None
) -> None:
    """Write the differences account range by account range, each range in a
    transaction of about APPLY_BATCH_S, each followed by a pause as long, so the
    pipeline's writer (waiting on busy_timeout) gets the lock in between."""
    done = 0
    size = 200
    low = ""
    while done < touched:
        upto = min(touched, done + size)
        high = conn.execute("SELECT account FROM stage.touched WHERE seq = ?", (upto,)).fetchone()[
            0
        ]
        conn.execute("BEGIN IMMEDIATE")
        started = time.perf_counter()
        try:
            for statement in _SQLITE_APPLY:
                conn.execute(statement, {"lo": low, "hi": high, "now": now})
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        held = time.perf_counter() - started
        rate = (upto - done) / max(held, 1e-4)
        done, low = upto, high
        if progress is not None:
            progress("write", done, touched)
        # Aim the next transaction at APPLY_BATCH_S from this one's rate; change by at
        # most 2x a step, so one slow fsync does not shrink it to nothing.
        size = int(min(max(rate * APPLY_BATCH_S, size / 2, 20), size * 2, 50_000))
        if done < touched:
            time.sleep(max(held, APPLY_PAUSE_MIN_S))


# -- stage 2 and 3 on PostgreSQL ----------------------------------------------------

_PG_TEMP_TABLES = """
CREATE TEMP TABLE import_rows (account text, serial text, zones int, digits int,
  last_t1 bigint, last_t2 bigint, last_t3 bigint, last_read_on date) ON COMMIT DROP;
CREATE TEMP TABLE import_phones (account text, phone text) ON COMMIT DROP;
"""
# (what it counts, statement): updates before inserts, so that a row inserted here is
# not counted again as updated; NOT EXISTS rather than ON CONFLICT alone, so that the
# unchanged majority of a nightly file neither takes a sequence value nor a row lock.
_PG_STEPS = (
    (
        # Every row of the file against its meter, in one join: which exist, and which
        # of those differ. The steps after it then touch only what changed (a
        # nightly delta: 1 %) instead of joining the whole file twice.
        None,
        """CREATE TEMP TABLE import_diff ON COMMIT DROP AS
           SELECT r.*, m.id AS meter_id,
                  m.id IS NOT NULL
                  AND (m.zones, m.digits, m.last_t1, m.last_t2, m.last_t3, m.last_read_on,
                       m.closed_at)
                      IS DISTINCT FROM (r.zones, r.digits, r.last_t1, r.last_t2, r.last_t3,
                                        r.last_read_on, NULL::timestamp) AS changed
           FROM import_rows r
           LEFT JOIN meters m ON m.account = r.account AND m.serial = r.serial""",
    ),
    # Its statistics: the planner then looks the few changed meters up by id rather
    # than scanning all of them.
    (None, "ANALYZE import_diff"),
    (
        # A new account has only new meters (a meter belongs to its account): only the
        # accounts of the rows with no meter yet are looked for, not the whole file's.
        "accounts_created",
        """INSERT INTO accounts (account, created_at)
           SELECT DISTINCT d.account, $1::timestamp FROM import_diff d
           WHERE d.meter_id IS NULL
             AND NOT EXISTS (SELECT 1 FROM accounts a WHERE a.account = d.account)""",
    ),
    (
        "accounts_updated",
        """UPDATE accounts a SET closed_at = NULL
           WHERE a.closed_at IS NOT NULL
             AND EXISTS (SELECT 1 FROM import_rows r WHERE r.account = a.account)""",
    ),
    (
        "meters_updated",
        """UPDATE meters m SET zones = d.zones, digits = d.digits, last_t1 = d.last_t1,
             last_t2 = d.last_t2, last_t3 = d.last_t3, last_read_on = d.last_read_on,
             closed_at = NULL
           FROM import_diff d
           WHERE d.changed AND m.id = d.meter_id""",
    ),
    (
        "meters_created",
        """INSERT INTO meters (account, serial, zones, digits, last_t1, last_t2, last_t3,
                               last_read_on)
           SELECT d.account, d.serial, d.zones, d.digits, d.last_t1, d.last_t2, d.last_t3,
                  d.last_read_on
           FROM import_diff d
           WHERE d.meter_id IS NULL
           ORDER BY d.account, d.serial""",
    ),
    (
        # ON CONFLICT as well: the pipeline may link the same phone (REG) meanwhile.
        "phones_added",
        """INSERT INTO account_phones (account, phone, source, created_at)
           SELECT DISTINCT p.account, p.phone, 'import', $1::timestamp FROM import_phones p
           WHERE NOT EXISTS (SELECT 1 FROM account_phones x
                             WHERE x.account = p.account AND x.phone = p.phone)
           ON CONFLICT DO NOTHING""",
    ),
)
_PG_PRUNE_STEPS = (
    (
        "meters_closed",
        """UPDATE meters m SET closed_at = $1::timestamp
           WHERE m.closed_at IS NULL
             AND NOT EXISTS (SELECT 1 FROM import_rows r
                             WHERE r.account = m.account AND r.serial = m.serial)""",
    ),
    (
        "accounts_closed",
        """UPDATE accounts a SET closed_at = $1::timestamp
           WHERE a.closed_at IS NULL
             AND NOT EXISTS (SELECT 1 FROM import_rows r WHERE r.account = a.account)""",
    ),
)
# COPY and the joins run in PostgreSQL; a big statement must not hit the engine's
# 60 s command timeout, which is sized for the SMS path.
_PG_STEP_TIMEOUT_S = 900.0


async def _staged_records(
    staging: _Staging, query: str, date_column: int | None = None
) -> AsyncIterator[tuple[Any, ...]]:
    """Rows of the staging file, fetched in a worker thread a chunk at a time; binary
    COPY wants a date object for a date column."""
    cursor = staging.open().execute(query)
    while chunk := await asyncio.to_thread(cursor.fetchmany, STAGE_BATCH_ROWS):
        if date_column is None:
            for record in chunk:
                yield record
            continue
        for record in chunk:
            text = record[date_column]
            yield (
                *record[:date_column],
                None if text is None else date.fromisoformat(text),
                *record[date_column + 1 :],
            )


async def _apply_postgresql(
    pg: Any,
    staging: _Staging,
    now: datetime,
    prune: _Prune | None,
    progress: ImportProgress | None,
) -> ImportCounts:
    counts = ImportCounts(rows=staging.rows)
    # The prune first (what it closes is absent from the file, so no other step touches
    # it): a refused prune rolls back before the rest of the work is done.
    steps = (*(_PG_PRUNE_STEPS if prune is not None else ()), *_PG_STEPS)
    total_steps = len(steps) + 1
    created_at = to_db_time(now)
    async with pg.transaction():
        # Hash joins of a million rows, in the server's memory, not ours.
        await pg.execute("SET LOCAL work_mem = '64MB'")
        await pg.execute(_PG_TEMP_TABLES)
        await pg.copy_records_to_table(
            "import_rows",
            records=_staged_records(
                staging,
                "SELECT account, serial, zones, digits, last_t1, last_t2, last_t3, "
                "last_read_on FROM rows",
                date_column=7,
            ),
            columns=[
                "account", "serial", "zones", "digits",
                "last_t1", "last_t2", "last_t3", "last_read_on",
            ],
            timeout=_PG_STEP_TIMEOUT_S,
        )  # fmt: skip
        await pg.copy_records_to_table(
            "import_phones",
            records=_staged_records(staging, "SELECT account, phone FROM phones"),
            columns=["account", "phone"],
            timeout=_PG_STEP_TIMEOUT_S,
        )
        # Temporary tables are never analysed by autovacuum: without statistics the
        # planner guesses a few rows and picks nested loops over a million.
        await pg.execute("ANALYZE import_rows; ANALYZE import_phones")
        if progress is not None:
            progress("write", 1, total_steps)
        if prune is not None:
            open_meters = await pg.fetchval("SELECT count(*) FROM meters WHERE closed_at IS NULL")
        for number, (name, statement) in enumerate(steps, start=2):
            args = (created_at,) if "$1" in statement else ()
            status = await pg.execute(statement, *args, timeout=_PG_STEP_TIMEOUT_S)
            if name is not None:
                setattr(counts, name, int(status.split()[-1]))
            if prune is not None and name == _PG_PRUNE_STEPS[-1][0]:
                prune.check(counts.meters_closed, open_meters, counts.accounts_closed)
            if progress is not None:
                progress("write", number, total_steps)
    counts.accounts_unchanged = staging.accounts - counts.accounts_created
    counts.accounts_unchanged -= counts.accounts_updated
    counts.meters_unchanged = staging.rows - counts.meters_created - counts.meters_updated
    counts.phones_unchanged = staging.phone_pairs - counts.phones_added
    return counts


@contextlib.asynccontextmanager
async def _postgresql_import_connection(store: SqlStore, words: CliTexts) -> AsyncIterator[Any]:
    """The raw asyncpg connection the import runs on, holding the import lock (a
    session advisory lock: a second import, from any instance, is refused)."""
    async with store.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        pg = raw.driver_connection
        assert pg is not None
        if not await pg.fetchval("SELECT pg_try_advisory_lock($1)", _PG_IMPORT_LOCK):
            raise ImportBusy(words.import_busy)
        try:
            yield pg
        finally:
            with contextlib.suppress(Exception):
                await pg.execute("SELECT pg_advisory_unlock($1)", _PG_IMPORT_LOCK)


# -- the import -------------------------------------------------------------------------

# The database (or the staging file's disk) failed: worth retrying later, not a bad file.
_UNAVAILABLE = (
    sqlite3.OperationalError,
    DBAPIError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
)


def _sqlite_database(store: SqlStore) -> Path:
    database = store.engine.url.database
    if not database or database == ":memory:":
        raise ValueError("an accounts import needs the SQLite database in a file")
    return Path(database)


async def import_accounts(
    store: SqlStore,
    source: ImportSource,
    account_pattern: str,
    now: datetime,
    progress: ImportProgress | None = None,
    *,
    prune: bool = False,
    prune_max_share: float = BillingSettings.prune_max_share,
    locale: str = "en",
    staging_dir: Path | None = None,
) -> ImportCounts:
    """Bring accounts, meters and phones in line with the file; all or nothing.

    `source`: a path, or the file as an iterator (sync or async) of text lines or of
    bytes chunks split anywhere, e.g. an HTTP body. `prune`: the file lists every
    account; accounts and meters it does not list are closed, unless that would be
    more than `prune_max_share` (0..1) of the open meters. `locale`: the language of
    the problems. `progress` is called from a worker thread. Raises ImportRejected
    (the bad lines; nothing written), PruneRefused (nothing written), ImportBusy
    (another import runs) or StoreUnavailable.
    """
    if not 0 <= prune_max_share <= 1:
        raise ValueError(f"prune_max_share must be 0..1, got {prune_max_share}")
    words = cli_texts(locale)
    pruning = _Prune(prune_max_share, words) if prune else None
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    staging = _Staging(staging_dir)
    stage = functools.partial(_stage_source, source, account_pattern, staging, progress, loop)
    try:
        if store.dialect == "sqlite":
            database = _sqlite_database(store)
            with _sqlite_import_lock(database, words):
                await asyncio.to_thread(stage, words)
                counts = await asyncio.to_thread(
                    _apply_sqlite, database, staging, now, pruning, progress
                )
        else:
            async with _postgresql_import_connection(store, words) as pg:
                await asyncio.to_thread(stage, words)
                counts = await _apply_postgresql(pg, staging, now, pruning, progress)
    except _UNAVAILABLE as exc:
        raise StoreUnavailable(f"accounts import: {exc.__class__.__name__}: {exc}") from exc
    finally:
        staging.remove()
    counts.seconds = time.monotonic() - started
    return counts


def read_accounts_csv(path: Path, account_pattern: str) -> list[MeterRow]:
    """Every row of a (small) file, validated; ImportRejected lists the bad lines."""
    pattern = re.compile(account_pattern)
    rows: list[MeterRow] = []
    problems: list[ImportProblem] = []
    seen: dict[tuple[str, str], int] = {}
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            found: list[str] = []
            parsed = _parse_row(reader.line_num, row, pattern, found)
            if parsed is None:
                problems.append(ImportProblem(reader.line_num, found[0]))
                continue
            first = seen.setdefault((parsed.account, parsed.serial), parsed.line)
            if first != parsed.line:
                twice = EN.meter_twice.format(
                    serial=parsed.serial, account=parsed.account, first=first
                )
                problems.append(ImportProblem(parsed.line, twice))
                continue
            rows.append(parsed)
    if problems:
        raise ImportRejected(problems[:MAX_REPORTED_PROBLEMS], len(problems))
    return rows


def _validate_period(period: str) -> None:
    if not _PERIOD.fullmatch(period):
        raise BadPeriod(f"period must be YYYY-MM, got {period!r}")


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


# submitted_at as the CSV has it (UTC, whole seconds, "+00:00"), formatted by the
# database: every column is then text or a number, and a batch of rows goes to
# csv.writerows as it comes, with no Python per row (the export runs on serve's event
# loop). Truncated, not rounded, as datetime.isoformat(timespec="seconds") would.
_PG_SUBMITTED = 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"'
_SQLITE_SUBMITTED = "%Y-%m-%dT%H:%M:%S+00:00"
# SQLite's planner reads the period's readings by their period index and sorts them
# by account in a temporary b-tree: the whole month, held in memory (temp_store =
# MEMORY), before the first row (+110 MB for a million). CROSS JOIN keeps meters the
# outer loop (SQLite's documented rule), walked in its (account, serial) index, each
# meter's reading found by (meter_id, period): the rows come out in order, at once.
_SQLITE_EXPORT = text(
    """SELECT meters.account, meters.serial, readings.period, readings.t1, readings.t2,
              readings.t3, readings.status, strftime(:stamp, readings.submitted_at),
              readings.channel
       FROM meters CROSS JOIN readings ON readings.meter_id = meters.id
       WHERE readings.period = :period
       ORDER BY meters.account, meters.serial"""
).columns(*(column(name) for name in EXPORT_COLUMNS))  # a SELECT: streamed, not buffered


def _export_statement(dialect: str, period: str) -> Executable:
    """The period's rows in EXPORT_COLUMNS order, sorted by account and serial."""
    if dialect == "sqlite":
        return _SQLITE_EXPORT.bindparams(period=period, stamp=_SQLITE_SUBMITTED)
    # PostgreSQL sorts in the server (spilling to disk past work_mem), not here.
    return (
        select(
            meters.c.account,
            meters.c.serial,
            readings.c.period,
            readings.c.t1,
            readings.c.t2,
            readings.c.t3,
            readings.c.status,
            func.to_char(readings.c.submitted_at, _PG_SUBMITTED),
            readings.c.channel,
        )
        .join(meters, meters.c.id == readings.c.meter_id)
        .where(readings.c.period == period)
        .order_by(meters.c.account, meters.c.serial)
    )


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
    stmt = _export_statement(store.dialect, period)
    async with store.reader() as tx:
        result = await tx.conn.stream(stmt.execution_options(yield_per=BATCH_ROWS))
        async for partition in result.partitions():
            buffer.seek(0)
            buffer.truncate()
            writer.writerows(partition)  # None (no t2, t3) is written as ""
            yield buffer.getvalue(), len(partition)
