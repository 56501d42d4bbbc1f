"""The SQL store: the message log, accounts, meters, readings and the outbox.

One `SqlStore` per process wraps the engines. Writes on the hot path are plain
functions of a synchronous Connection run by `run_transaction` (on SQLite in one
writer thread, group-committed; on PostgreSQL through run_sync); the ops API, the
import and the export use `transaction()` / `reader()` and a `StoreTransaction`.
Database failures leave this module as `StoreUnavailable`, so transports can
answer with a temporary error.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, TypeVar

import structlog
from sqlalchemy import DateTime, Integer, String, bindparam, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import BindParameter

from adapters.db.prepared import Prepared
from adapters.db.schema import (
    account_phones,
    accounts,
    messages,
    meters,
    readings,
)
from sms_gateway.domain.model import (
    Account,
    BookedReading,
    InboundSms,
    Meter,
    ReadingStatus,
)
from sms_gateway.errors import StoreUnavailable
from sms_gateway.ports import OutboundSms

T = TypeVar("T")

log = structlog.get_logger("adapters.db.store")

_UNAVAILABLE = (OperationalError, InterfaceError, DisconnectionError, OSError, TimeoutError)


def to_db_time(moment: datetime) -> datetime:
    """Aware datetime -> naive UTC, the form every table stores."""
    if moment.tzinfo is None:
        return moment
    if moment.tzinfo is UTC:  # the pipeline's clock: no conversion (a few rows per MO)
        return moment.replace(tzinfo=None)
    return moment.astimezone(UTC).replace(tzinfo=None)


def from_db_time(moment: datetime) -> datetime:
    """Naive UTC from a (NOT NULL) column -> aware UTC."""
    return moment.replace(tzinfo=UTC)


def _values(row: Any, zones: int) -> tuple[int, ...]:
    return tuple(int(v) for v in (row.t1, row.t2, row.t3)[:zones])


def _value_columns(values: Sequence[int]) -> dict[str, int | None]:
    padded = list(values) + [None] * (3 - len(values))
    return {"t1": padded[0], "t2": padded[1], "t3": padded[2]}


def _meter(row: Any) -> Meter:
    last = (row.last_t1, row.last_t2, row.last_t3)[: row.zones]
    last_values = tuple(int(v) for v in last) if all(v is not None for v in last) else None
    return Meter(
        account=row.account,
        serial=row.serial,
        zones=row.zones,
        digits=row.digits,
        last_values=last_values,
        last_read_on=row.last_read_on,
        id=row.id,
    )


def upsert_into(conn: Connection | AsyncConnection, table: Any) -> Any:
    """INSERT that can say ON CONFLICT, in the connection's dialect."""
    return upsert_for(conn.dialect.name, table)


def upsert_for(dialect: str, table: Any) -> Any:
    """INSERT that can say ON CONFLICT, in the named dialect."""
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def booked_reading(meter: Meter, row: Any) -> BookedReading:
    submitted = from_db_time(row.submitted_at)
    return BookedReading(
        meter=meter,
        period=row.period,
        values=_values(row, meter.zones),
        status=ReadingStatus(row.status),
        submitted_at=submitted,
        channel=row.channel,
        phone=row.phone,
        inbound_id=row.inbound_id,
    )


_ACCOUNTS: BindParameter[Any] = bindparam("accounts", expanding=True)
# Closed accounts and meters (an import with --prune) are unknown to the pipeline.
_METERS_OF_ACCOUNTS = Prepared(
    select(meters)
    .join(accounts, accounts.c.account == meters.c.account)
    .where(
        meters.c.account.in_(_ACCOUNTS),
        meters.c.closed_at.is_(None),
        accounts.c.closed_at.is_(None),
    )
    .order_by(meters.c.id)
)
_PHONES_OF_ACCOUNTS = Prepared(
    select(account_phones.c.account, account_phones.c.phone).where(
        account_phones.c.account.in_(_ACCOUNTS)
    )
)


def load_accounts(conn: Connection, account_ids: Iterable[str]) -> dict[str, Account]:
    """Accounts with their meters and phones, in two queries."""
    wanted = sorted(set(account_ids))
    if not wanted:
        return {}
    meter_rows = _METERS_OF_ACCOUNTS.rows(conn, {"accounts": wanted})
    phone_rows = _PHONES_OF_ACCOUNTS.rows(conn, {"accounts": wanted})
    by_account: dict[str, list[Meter]] = {}
    for row in meter_rows:
        by_account.setdefault(row.account, []).append(_meter(row))
    phones: dict[str, set[str]] = {}
    for row in phone_rows:
        phones.setdefault(row.account, set()).add(row.phone)
    return {
        account: Account(account, tuple(account_meters), frozenset(phones.get(account, ())))
        for account, account_meters in by_account.items()
    }


@cache
def _insert_inbound(dialect: str) -> Prepared:
    return Prepared(
        upsert_for(dialect, messages)
        .on_conflict_do_nothing()
        .returning(messages.c.id, messages.c.channel, messages.c.external_id, messages.c.dedupe_key)
    )


# The MO in doubt from some phones, oldest first. `ack = 'doubt'` is spelled as the
# partial index ix_messages_doubt spells it: SQLite uses such an index only when the
# query's condition is literally the index's.
_DOUBTFUL = Prepared(
    select(
        messages.c.id,
        messages.c.channel,
        messages.c.phone,
        messages.c.short_number,
        messages.c.text,
    )
    .where(
        text("messages.ack = 'doubt'"),
        messages.c.phone.in_(bindparam("b_phones", expanding=True)),
        messages.c.created_at >= bindparam("b_since", type_=DateTime),
    )
    .order_by(messages.c.id)
)


def _redeliveries(
    conn: Connection, inbounds: Sequence[InboundSms], window: timedelta
) -> dict[int, int]:
    """{index in `inbounds`: id of the MO in doubt it redelivers}; each MO in doubt is
    redelivered at most once, and is no longer in doubt afterwards."""
    candidates = [m for m in inbounds if m.may_be_redelivery and m.external_id is None]
    if not candidates:
        return {}
    since = min(m.received_at for m in candidates) - window
    doubtful = _DOUBTFUL.rows(
        conn, {"b_phones": sorted({m.phone for m in candidates}), "b_since": to_db_time(since)}
    )
    if not doubtful:
        return {}
    waiting: dict[tuple[str, str, str, str], list[int]] = {}
    for row in doubtful:
        waiting.setdefault((row.channel, row.phone, row.short_number, row.text), []).append(
            int(row.id)
        )
    matched: dict[int, int] = {}
    for index, m in enumerate(inbounds):
        if not m.may_be_redelivery or m.external_id is not None:
            continue
        ids = waiting.get((m.channel, m.phone, m.short_number, m.text))
        if ids:
            matched[index] = ids.pop(0)
    if matched:  # rare: a plain statement
        conn.execute(
            update(messages)
            .where(messages.c.id.in_(sorted(matched.values())))
            .values(ack="redelivered")
        )
    return matched


def mark_in_doubt(conn: Connection, inbound_ids: Sequence[int]) -> None:
    """These MO's acknowledgements may have been lost (see adapters/smpp/acks.py)."""
    for start in range(0, len(inbound_ids), 500):
        chunk = inbound_ids[start : start + 500]
        conn.execute(
            update(messages)
            .where(messages.c.direction == "in", messages.c.id.in_(chunk))
            .values(ack="doubt")
        )


def insert_inbound_many(
    conn: Connection,
    inbounds: Sequence[InboundSms],
    instance: str | None = None,
    redelivery_window: timedelta | None = None,
) -> list[tuple[int, bool]]:
    """Store inbound SMS in one statement; (id, duplicate) for each, in order.

    Every inbound carries an external_id or a dedupe_key: a redelivery conflicts
    with the stored row and is answered with that row's id. One that
    `may_be_redelivery` is the redelivery of an MO in doubt from the same phone with the
    same text received at most `redelivery_window` earlier, if there is one
    (docs/operators.md).
    """
    redelivered = (
        _redeliveries(conn, inbounds, redelivery_window) if redelivery_window is not None else {}
    )
    if redelivered:
        fresh = [m for index, m in enumerate(inbounds) if index not in redelivered]
        stored = iter(insert_inbound_many(conn, fresh, instance))
        return [
            (redelivered[index], True) if index in redelivered else next(stored)
            for index in range(len(inbounds))
        ]
    rows = [
        {
            "direction": "in",
            "channel": m.channel,
            "phone": m.phone,
            "short_number": m.short_number,
            "text": m.text,
            "created_at": to_db_time(m.received_at),
            "external_id": m.external_id,
            "dedupe_key": m.dedupe_key,
            "status": "received",
            "attempts": 0,
            "parts": m.parts,
            "incomplete": m.incomplete,
            "instance": instance,
            "link": m.link,
            "link_group": m.link_group,
        }
        for m in inbounds
    ]
    inserted: dict[tuple[str, str | None, str | None], int] = {}
    for row in _insert_inbound(conn.dialect.name).each(conn, rows):
        inserted[(row.channel, row.external_id, row.dedupe_key)] = int(row.id)
    out: list[tuple[int, bool]] = []
    claimed: set[int] = set()
    for m in inbounds:
        new_id = inserted.get((m.channel, m.external_id, m.dedupe_key))
        if new_id is not None and new_id not in claimed:
            claimed.add(new_id)
            out.append((new_id, False))
            continue
        if m.external_id is not None:
            key = messages.c.external_id == m.external_id
        else:
            key = messages.c.dedupe_key == m.dedupe_key
        existing = conn.execute(select(messages.c.id).where(messages.c.channel == m.channel, key))
        out.append((int(existing.scalar_one()), True))
    return out


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A row of the message log as the ops API shows it."""

    id: int
    direction: str
    channel: str
    phone: str
    short_number: str
    text: str
    outcome: str | None
    account: str | None
    created_at: datetime
    reply_to: int | None
    status: str
    # The transport's id for a reply (SMPP message_id, Twilio SID): what the
    # operator's logs and delivery receipts name it by.
    transport_id: str | None
    delivery_status: str | None
    error: str | None


def _stored_message(row: Any) -> StoredMessage:
    created = from_db_time(row.created_at)
    return StoredMessage(
        id=row.id,
        direction=row.direction,
        channel=row.channel,
        phone=row.phone,
        short_number=row.short_number,
        text=row.text,
        outcome=row.outcome,
        account=row.account,
        created_at=created,
        reply_to=row.reply_to,
        status=row.status,
        transport_id=row.transport_id,
        delivery_status=row.delivery_status,
        error=row.error,
    )


def _in_savepoint(conn: Connection, work: Callable[[Connection], Any]) -> tuple[bool, Any]:
    """(True, result) or (False, error), the work's writes undone on error.

    An unavailable database ends the whole transaction instead. Only the SQLite writer
    thread calls it, on sqlite3 itself: SQLAlchemy's begin_nested costs as much per
    batch as the rest of its plumbing. No work opens savepoints of its own.
    """
    driver = conn.connection.driver_connection
    assert driver is not None
    driver.execute("SAVEPOINT work")
    try:
        result = work(conn)
    except _UNAVAILABLE:
        raise
    except Exception as exc:
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            raise
        driver.execute("ROLLBACK TO SAVEPOINT work")
        driver.execute("RELEASE SAVEPOINT work")
        return False, exc
    driver.execute("RELEASE SAVEPOINT work")
    return True, result


# A piece of work's future, whether it succeeded, and its result or error.
_Outcome = tuple[asyncio.Future[Any], bool, Any]


def _settle_futures(settled: list[_Outcome]) -> None:
    for future, ok, value in settled:
        if future.cancelled():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


@contextmanager
def _mapped_errors() -> Iterator[None]:
    """Database failures leave the store as StoreUnavailable (a temporary failure)."""
    try:
        yield
    except _UNAVAILABLE as exc:
        raise StoreUnavailable(f"database unavailable: {exc.__class__.__name__}") from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise StoreUnavailable("database connection lost") from exc
        raise


# How long work that rides along waits for company (SqlStore.run_transaction). Longer
# than the inbound batches' linger ([database] commit_linger_ms, 20 ms by default): at
# a steady trickle the replies of one batch are marked sent with the next batch.
RIDE_ALONG_S = 0.05

# The SQLite writer copies the WAL into the database (a checkpoint) after this many
# commits, once their callers are answered: left to SQLite (every 1,000 WAL pages), the
# checkpoint ran inside a commit, and that batch's MO waited for it (20-50 ms against
# 2-5 for a plain commit at a steady 200 MO/s: the tail of MO->reply latency). At a
# trickle the next batch is lingering for company meanwhile, so nobody waits; under
# load the next batch waits for it, as it waited for SQLite's. At about 45 pages a
# commit this keeps the WAL near SQLite's default size; SQLite's own checkpoint stays
# as the bound, at engine.WRITER_AUTOCHECKPOINT_PAGES (a burst's big commits reach it).
CHECKPOINT_EVERY_COMMITS = 20

# A commit (or the writer's checkpoint) slower than this is logged as a warning: every
# MO of its batch waited that long for its acknowledgement and reply. On 2026-12-07
# the soak saw commits of 35-377 ms for a second while the machine's disk was slow,
# against 1-3 ms normally; the histogram of every commit is on /metrics.
SLOW_COMMIT_S = 1.0


def _warn_if_slow(event: str, seconds: float) -> None:
    if seconds >= SLOW_COMMIT_S:
        log.warning(event, seconds=round(seconds, 3))


class SqlStore:
    """The process's gateway to the database."""

    def __init__(
        self,
        engine: AsyncEngine,
        read_engine: AsyncEngine | None = None,
        batch_engine: Engine | None = None,
    ) -> None:
        self.engine = engine
        self.read_engine = read_engine or engine
        self.batch_engine = batch_engine
        self.dialect = engine.dialect.name
        # SQLite has one writer: serialising our own transactions avoids
        # "database is locked" retries inside one process.
        self._write_lock = asyncio.Lock() if self.dialect == "sqlite" else None
        self._writer_conn: Connection | None = None
        self._batch_thread = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
            if batch_engine is not None
            else None
        )
        self._queued: list[tuple[Callable[[Connection], Any], asyncio.Future[Any], Any, bool]] = []
        self._queued_lock = threading.Lock()
        # Signalled when work that does not ride along is queued.
        self._company = threading.Condition(self._queued_lock)
        self._draining = False
        # Commits ride-along work queued while the writer is idle, if nothing else does.
        self._ride_timer: asyncio.TimerHandle | None = None
        self._waited_for_company = False
        self._closed = False
        self._commits_since_checkpoint = 0
        # Called with each write transaction's commit time in seconds (the gateway's
        # sms_gateway_db_commit_seconds); from the SQLite writer thread, on SQLite.
        self.observe_commit: Callable[[float], None] | None = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[StoreTransaction]:
        """One database transaction; commits on success, rolls back on error."""
        with _mapped_errors():
            if self._write_lock is not None:
                async with self._write_lock, self.engine.begin() as conn:
                    yield StoreTransaction(self, conn)
            else:
                async with self.engine.begin() as conn:
                    yield StoreTransaction(self, conn)

    async def run_transaction(self, work: Callable[[Connection], T], ride_along: bool = False) -> T:
        """Run `work(connection)` synchronously in a transaction; its result after the commit.

        On PostgreSQL: in a pooled connection through run_sync. On SQLite: in the
        writer thread on the plain sqlite3 driver, where every piece of work queued
        meanwhile shares one transaction and one commit (each inside a savepoint, so
        one failing piece rolls back alone).

        ride_along (SQLite): work nobody waits on to answer a subscriber (replies marked
        sent) waits up to RIDE_ALONG_S for other work to share its commit, instead of
        paying a commit of its own: in the SMPP bench a commit cost about 400 µs of CPU
        (its pages written to the WAL), the SQL of six or seven messages. While the
        writer is idle it is not woken for such work: a timer on the loop wakes it
        if no company comes first (each wake-up of a sleeping thread costs CPU).
        """
        if self._batch_thread is None:
            with _mapped_errors():
                async with self.engine.begin() as conn:
                    result = await conn.run_sync(work)
                    commit_started = time.perf_counter()  # the block's end commits
                self._committed(time.perf_counter() - commit_started)
                return result
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._queued_lock:
            self._queued.append((work, future, loop, ride_along))
            start = not self._draining and not ride_along
            if start:
                self._draining = True
            elif not self._draining:  # ride-along work, the writer idle: held here
                if self._ride_timer is None:
                    self._ride_timer = loop.call_later(RIDE_ALONG_S, self._ride_alone)
            elif not ride_along:
                self._company.notify()
        if start:
            self._start_drain()
        with _mapped_errors():
            return await future

    def _ride_alone(self) -> None:
        """No company came for the ride-along work within RIDE_ALONG_S: commit it."""
        self._ride_timer = None
        with self._queued_lock:
            if self._draining or not self._queued:
                return
            self._draining = True
            self._waited_for_company = True  # the writer is not to wait a second time
        self._start_drain()

    def _start_drain(self) -> None:
        if self._ride_timer is not None:
            self._ride_timer.cancel()
            self._ride_timer = None
        assert self._batch_thread is not None
        self._batch_thread.submit(self._drain_queued)

    def _drain_queued(self) -> None:
        """Writer thread: commit whatever work is queued, until nothing is."""
        while True:
            with self._queued_lock:
                if (
                    self._queued
                    and not self._waited_for_company
                    and all(ride_along for *_, ride_along in self._queued)
                ):
                    self._company.wait_for(self._has_company, timeout=RIDE_ALONG_S)
                self._waited_for_company = False
                queued, self._queued = self._queued, []
                if not queued:
                    self._draining = False
                    return
            outcomes: list[tuple[bool, Any]]
            commit_s: float | None = None  # set once committed
            try:
                conn = self._writer_connection()
                with conn.begin():
                    if len(queued) == 1:
                        # Alone in its transaction: its failure rolls back only itself.
                        outcomes = [(True, queued[0][0](conn))]
                    else:
                        outcomes = [_in_savepoint(conn, work) for work, *_ in queued]
                    commit_started = time.perf_counter()  # the block's end commits
                commit_s = time.perf_counter() - commit_started
            except Exception as exc:
                self._drop_writer_connection()
                outcomes = [(False, exc)] * len(queued)
            if commit_s is not None:  # counted before its callers go on
                self._committed(commit_s)
            # One hand-over per loop, not per future: each call_soon_threadsafe writes to
            # the loop's wake-up pipe, a system call (8 % of this thread's time at a
            # steady 200 MO/s, a batch and the replies marked sent each drain).
            by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
            for (_work, future, loop, _), (ok, value) in zip(queued, outcomes, strict=True):
                by_loop.setdefault(loop, []).append((future, ok, value))
            for loop, settled in by_loop.items():
                loop.call_soon_threadsafe(_settle_futures, settled)
            if self._writer_conn is not None:
                self._commits_since_checkpoint += 1
                if self._commits_since_checkpoint >= CHECKPOINT_EVERY_COMMITS:
                    self._checkpoint(self._writer_conn)

    def _checkpoint(self, conn: Connection) -> None:
        """Writer thread, between transactions: copy the WAL into the database without
        waiting for readers (PASSIVE). This process's one writer writes nothing meanwhile,
        so the next commit writes the WAL from its start again and the file keeps its
        size (a write by another process in between only defers that to the next one)."""
        self._commits_since_checkpoint = 0
        started = time.perf_counter()
        try:
            driver = conn.connection.driver_connection
            assert driver is not None
            driver.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except Exception as exc:
            # The next commit past SQLite's own threshold checkpoints instead.
            log.warning("sqlite.checkpoint_failed", error=str(exc))
            return
        # The next batch waited for it (under load): a disk this slow shows here too.
        _warn_if_slow("db.slow_checkpoint", time.perf_counter() - started)

    def _committed(self, seconds: float) -> None:
        if self.observe_commit is not None:
            self.observe_commit(seconds)
        _warn_if_slow("db.slow_commit", seconds)

    def _has_company(self) -> bool:
        # Closing: nothing more will come.
        return self._closed or not all(ride_along for *_, ride_along in self._queued)

    def _writer_connection(self) -> Connection:
        """The writer thread's connection, kept open between transactions: a pool
        checkout and its reset-on-return each time cost more than a small batch."""
        if self._writer_conn is None:
            assert self.batch_engine is not None
            self._writer_conn = self.batch_engine.connect()
        return self._writer_conn

    def _drop_writer_connection(self, broken: bool = True) -> None:
        """Close the writer's connection; the next batch opens a new one. After a
        failure it may be broken: it is invalidated rather than returned to the pool."""
        conn, self._writer_conn = self._writer_conn, None
        if conn is None:
            return
        if broken:
            with contextlib.suppress(Exception):
                conn.invalidate()
        with contextlib.suppress(Exception):
            conn.close()

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[StoreTransaction]:
        """A read-only connection that does not wait for the SQLite writer."""
        with _mapped_errors():
            async with self.read_engine.connect() as conn:
                yield StoreTransaction(self, conn)

    async def ping(self) -> bool:
        try:
            async with self.reader() as tx:
                await tx.conn.execute(select(1))
            return True
        except StoreUnavailable:
            return False

    async def aclose(self) -> None:
        if self._closed:
            return
        with self._queued_lock:
            self._closed = True
            self._company.notify()  # the writer, waiting for company, goes now
        if self._ride_timer is not None:  # ride-along work held: committed first
            self._ride_alone()
        if self._batch_thread is not None:
            # The writer's connection belongs to its thread: closed there, last.
            self._batch_thread.submit(self._drop_writer_connection, False)
            self._batch_thread.shutdown(wait=True)
        if self.batch_engine is not None:
            self.batch_engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()
        await self.engine.dispose()


class StoreTransaction:
    """Queries and writes in one transaction, in domain terms."""

    def __init__(self, store: SqlStore, conn: AsyncConnection) -> None:
        self.store = store
        self.conn = conn

    # -- the message log --------------------------------------------------

    async def unprocessed_inbound(
        self, channel: str, limit: int, after_id: int = 0
    ) -> list[tuple[int, InboundSms]]:
        """Inbound SMS stored but never processed (e.g. the process died in between),
        by id from after `after_id`."""
        rows = await self.conn.execute(
            select(messages)
            .where(
                messages.c.direction == "in",
                messages.c.status == "received",
                messages.c.channel == channel,
                messages.c.id > after_id,
            )
            .order_by(messages.c.id)
            .limit(limit)
        )
        out = []
        for row in rows:
            received_at = from_db_time(row.created_at)
            out.append(
                (
                    int(row.id),
                    InboundSms(
                        channel=row.channel,
                        phone=row.phone,
                        short_number=row.short_number,
                        text=row.text,
                        received_at=received_at,
                        external_id=row.external_id,
                        dedupe_key=row.dedupe_key,
                        parts=row.parts,
                        incomplete=row.incomplete,
                    ),
                )
            )
        return out

    # -- accounts, meters, phones ----------------------------------------------

    async def load_accounts(self, account_ids: Iterable[str]) -> dict[str, Account]:
        return await self.conn.run_sync(load_accounts, list(account_ids))

    async def outbox_depth(self) -> int:
        result = await self.conn.execute(
            select(func.count())
            .select_from(messages)
            .where(messages.c.direction == "out", messages.c.status.in_(("pending", "sending")))
        )
        return int(result.scalar_one())

    # -- the ops view ------------------------------------------------------

    async def list_messages(
        self,
        *,
        phone: str | None = None,
        account: str | None = None,
        outcome: str | None = None,
        since: datetime | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[StoredMessage]:
        stmt = select(messages).order_by(messages.c.id.desc()).limit(limit)
        if phone:
            stmt = stmt.where(messages.c.phone == phone)
        if account:
            stmt = stmt.where(messages.c.account == account)
        if outcome:
            stmt = stmt.where(messages.c.outcome == outcome)
        if since:
            stmt = stmt.where(messages.c.created_at >= to_db_time(since))
        if before_id:
            stmt = stmt.where(messages.c.id < before_id)
        return [_stored_message(row) for row in await self.conn.execute(stmt)]

    async def readings_of_account(self, account: str) -> list[dict[str, Any]]:
        rows = await self.conn.execute(
            select(readings, meters.c.serial, meters.c.zones)
            .join(meters, meters.c.id == readings.c.meter_id)
            .where(meters.c.account == account)
            .order_by(meters.c.serial, readings.c.period)
        )
        out = []
        for row in rows:
            submitted = from_db_time(row.submitted_at)
            out.append(
                {
                    "meter_serial": row.serial,
                    "period": row.period,
                    "values": list(_values(row, row.zones)),
                    "status": row.status,
                    "submitted_at": submitted.isoformat(),
                    "channel": row.channel,
                }
            )
        return out

    async def meters_of_account(self, account: str) -> list[dict[str, Any]]:
        """Each meter with billing's latest reading (the accounts file) and the latest
        booked here, and which of them the next SMS is compared with: where they
        differ, ops see both."""
        meter_rows = (
            await self.conn.execute(
                select(meters).where(meters.c.account == account).order_by(meters.c.serial)
            )
        ).all()
        out = []
        for row in meter_rows:
            latest = (
                await self.conn.execute(
                    select(readings)
                    .where(readings.c.meter_id == row.id)
                    .order_by(readings.c.period.desc())
                    .limit(1)
                )
            ).first()
            billing = None
            if row.last_read_on is not None and row.last_t1 is not None:
                billing = {
                    "values": [row.last_t1, row.last_t2, row.last_t3][: row.zones],
                    "read_on": row.last_read_on.isoformat(),
                }
            booked = None
            if latest is not None:
                booked = {
                    "period": latest.period,
                    "values": list(_values(latest, row.zones)),
                    "submitted_at": from_db_time(latest.submitted_at).isoformat(),
                    "channel": latest.channel,
                }
            compared_with = None
            if billing is not None and (
                latest is None or row.last_read_on >= from_db_time(latest.submitted_at).date()
            ):
                compared_with = "billing"
            elif latest is not None:
                compared_with = "booked"
            out.append(
                {
                    "meter_serial": row.serial,
                    "zones": row.zones,
                    "billing": billing,
                    "latest_booked": booked,
                    "compared_with": compared_with,
                    "differ": billing is not None
                    and booked is not None
                    and billing["values"] != booked["values"],
                }
            )
        return out

    async def count_accounts(self) -> int:
        result = await self.conn.execute(select(func.count()).select_from(accounts))
        return int(result.scalar_one())


# -- the outbox: synchronous, run by the group commit in one transaction --------------


@cache
def _claim_outbound(dialect: str, by_group: bool) -> Prepared:
    pending = select(messages.c.id).where(
        messages.c.direction == "out",
        messages.c.status == "pending",
        messages.c.channel == bindparam("b_channel"),
    )
    if by_group:
        # Only what this instance's bound links may carry (a reply of no group: any).
        pending = pending.where(
            or_(
                messages.c.link_group.is_(None),
                messages.c.link_group.in_(bindparam("b_groups", expanding=True)),
            )
        )
    pending = pending.order_by(messages.c.id).limit(bindparam("b_limit", type_=Integer))
    if dialect == "postgresql":
        # Several instances share one outbox: each takes rows nobody holds.
        pending = pending.with_for_update(skip_locked=True)
    return Prepared(
        update(messages)
        .where(messages.c.id.in_(pending.scalar_subquery()))
        .values(
            status="sending",
            claimed_at=bindparam("b_now", type_=DateTime),
            instance=bindparam("b_instance", type_=String),
            attempts=messages.c.attempts + 1,
        )
        .returning(
            messages.c.id,
            messages.c.channel,
            messages.c.phone,
            messages.c.short_number,
            messages.c.text,
            messages.c.reply_to,
            messages.c.attempts,
            messages.c.created_at,
            messages.c.link,
            messages.c.link_group,
        )
    )


def claim_outbound(
    conn: Connection,
    channel: str,
    limit: int,
    now: datetime,
    instance: str | None = None,
    groups: Sequence[str] | None = None,
) -> list[OutboundSms]:
    """Take up to `limit` pending replies; with `groups`, only replies of those link
    groups (or of none)."""
    params: dict[str, Any] = {
        "b_channel": channel,
        "b_limit": limit,
        "b_now": to_db_time(now),
        "b_instance": instance,
    }
    if groups is not None:
        if not groups:
            return []
        params["b_groups"] = sorted(groups)
    result = _claim_outbound(conn.dialect.name, groups is not None).rows(conn, params)
    out = []
    for row in result:
        created = from_db_time(row.created_at)
        out.append(
            OutboundSms(
                id=int(row.id),
                channel=row.channel,
                phone=row.phone,
                short_number=row.short_number,
                text=row.text,
                inbound_id=row.reply_to,
                attempts=int(row.attempts),
                created_at=created,
                link=row.link,
                link_group=row.link_group,
            )
        )
    return sorted(out, key=lambda o: o.id)


def claim_outbound_one(
    conn: Connection, outbound_id: int, now: datetime, instance: str | None = None
) -> bool:
    """Take one pending reply for sending; False when another sender has it."""
    result = conn.execute(
        update(messages)
        .where(messages.c.id == outbound_id, messages.c.status == "pending")
        .values(
            status="sending",
            claimed_at=to_db_time(now),
            instance=instance,
            attempts=messages.c.attempts + 1,
        )
    )
    return bool(result.rowcount)


_SET_OUTBOUND_STATUS = Prepared(update(messages).where(messages.c.id == bindparam("b_id")))


def set_outbound_statuses(conn: Connection, changes: list[dict[str, Any]]) -> None:
    """Many status changes at once: dicts of b_id, status, transport_id, error.

    A change without a transport id keeps the one the row has.
    """
    with_id = [c for c in changes if c["transport_id"] is not None]
    without_id = [
        {"b_id": c["b_id"], "status": c["status"], "error": c["error"]}
        for c in changes
        if c["transport_id"] is None
    ]
    # executemany: the keys other than b_id become the SET clause.
    _SET_OUTBOUND_STATUS.many(conn, with_id)
    _SET_OUTBOUND_STATUS.many(conn, without_id)


def release_stale_outbound(
    conn: Connection, older_than: datetime, keep: Collection[int] = ()
) -> int:
    """Claimed replies whose sender died before reporting: back to pending.

    `keep`: replies the calling instance is still sending, however long they take.
    """
    stale = update(messages).where(
        messages.c.direction == "out",
        messages.c.status == "sending",
        or_(messages.c.claimed_at.is_(None), messages.c.claimed_at < to_db_time(older_than)),
    )
    if keep:
        stale = stale.where(messages.c.id.not_in(sorted(keep)))
    result = conn.execute(stale.values(status="pending"))
    return int(result.rowcount or 0)


def expire_outbound(conn: Connection, channel: str, older_than: datetime, error: str) -> int:
    """Replies still waiting (no link of their group was bound) since before
    `older_than`: recorded failed with `error`, never sent."""
    result = conn.execute(
        update(messages)
        .where(
            messages.c.direction == "out",
            messages.c.channel == channel,
            messages.c.status == "pending",
            messages.c.created_at < to_db_time(older_than),
        )
        .values(status="failed", error=error)
    )
    return int(result.rowcount or 0)


def record_delivery_status(
    conn: Connection, transport_id: str, status: str, error: str | None
) -> bool:
    result = conn.execute(
        update(messages)
        .where(messages.c.direction == "out", messages.c.transport_id == transport_id)
        .values(delivery_status=status, error=error)
    )
    return bool(result.rowcount)
