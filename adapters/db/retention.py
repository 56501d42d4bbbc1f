"""Retention: the message log and its side tables pruned in short batches.

What goes, once older than the retention period (`[database] keep_messages_days`):

- inbound SMS that were processed, together with their replies (and the delivery
  receipts stored on them), but only when every reply is final (sent or failed) and
  older than the cutoff too: `messages.reply_to` is a foreign key, so the replies go
  first, in the same transaction;
- replies without an inbound (none are written today), when final;
- `pending_confirmations` and `ops_login_failures` rows (both are useless after a day;
  the cutoff is simply the one safe bound they share with the log);
- `inbound_parts` rows older than the cutoff, and any older than
  PARTS_ORPHANED_AFTER whatever the cutoff: a part is held for seconds (the
  reassembly timeout), so one left for days belongs to an instance that never came
  back.

What never goes: an inbound still `received` (not processed yet: the recovery loop
will handle it), a reply `pending` or `sending` (and so its inbound), and bookings:
`readings` are never touched. `readings.inbound_id` (not a foreign key) then names a
message that is no longer in the log; nothing reads the message through it.

Every batch is one short transaction through `SqlStore.run_transaction`, the path every
writer takes (on SQLite the one writer thread, so the pipeline's commits interleave
with the prune's instead of waiting for all of it), and the prune sleeps a little
between batches. Each table is walked with a cursor (created_at, id): rows that must
stay are looked at once, not again in every batch.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Column, Table, and_, bindparam, delete, exists, or_, select, true
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import BindParameter

from adapters.db.schema import inbound_parts, messages, ops_login_failures, pending_confirmations
from adapters.db.store import SqlStore, to_db_time

T = TypeVar("T")

# Statuses after which a reply never changes again (only its receipt, which goes too).
FINAL_REPLY = ("sent", "failed")
PROCESSED = "processed"
# Far beyond any reassembly timeout (seconds to minutes), and beyond a weekend without
# the instance that holds the other parts.
PARTS_ORPHANED_AFTER = timedelta(days=7)
# Rows of the log looked at per transaction. With their replies a batch deletes at most
# about twice as many. A batch of 1000 held the writer about 20 ms (the log has eight
# indexes to update), on SQLite and PostgreSQL alike.
BATCH_SIZE = 1000
# A batch's ids are bound parameters (twice as many as rows, with the replies): well
# within the 32,766 that SQLite and asyncpg accept in one statement.
MAX_BATCH_SIZE = 10_000
# Between batches: the pipeline's queued work gets the writer first.
PAUSE_S = 0.05

_IDS: BindParameter[Any] = bindparam("ids", expanding=True)
_reply = messages.alias("reply")


@dataclass(frozen=True, slots=True)
class PruneCounts:
    """Rows deleted per table (or that would be, in a dry run)."""

    messages: int = 0
    inbound_parts: int = 0
    pending_confirmations: int = 0
    ops_login_failures: int = 0
    # Transactions it took (batches looked at, in a dry run).
    batches: int = 0


# A table walked in batches: where the last batch ended (created_at, id).
_Cursor = tuple[datetime, int] | None


@dataclass(frozen=True, slots=True)
class _Batch:
    deleted: int
    cursor: _Cursor  # None: this was the last batch


# (cutoff, cursor, batch size, dry run, connection) -> what the batch did
_BatchWork = Callable[[datetime, _Cursor, int, bool, Connection], _Batch]


def _after(time_column: Column[Any], id_column: Column[Any], cursor: _Cursor) -> Any:
    """Rows after the cursor, written so that the index on the time column serves it."""
    if cursor is None:
        return true()
    moment, last_id = cursor
    return and_(time_column >= moment, or_(time_column > moment, id_column > last_id))


def _window(
    conn: Connection,
    table: Table,
    time_column: Column[Any],
    cutoff: datetime,
    cursor: _Cursor,
    size: int,
    *columns: Column[Any],
) -> Sequence[Any]:
    return conn.execute(
        select(table.c.id, time_column, *columns)
        .where(time_column < cutoff, _after(time_column, table.c.id, cursor))
        .order_by(time_column, table.c.id)
        .limit(size)
    ).all()


def _next_cursor(window: Sequence[Any], time_column: Column[Any], size: int) -> _Cursor:
    if len(window) < size:
        return None
    last = window[-1]
    return (getattr(last, time_column.name), int(last.id))


def _messages_batch(
    cutoff: datetime, cursor: _Cursor, size: int, dry_run: bool, conn: Connection
) -> _Batch:
    """The next `size` rows of the log older than the cutoff: what may go, goes."""
    window = _window(
        conn,
        messages,
        messages.c.created_at,
        cutoff,
        cursor,
        size,
        messages.c.direction,
        messages.c.status,
        messages.c.reply_to,
    )
    inbound = [r.id for r in window if r.direction == "in" and r.status == PROCESSED]
    # Replies are deleted through their inbound wherever they fall in the walk; only
    # the rare reply to nothing is taken from the window itself.
    lone = [
        r.id
        for r in window
        if r.direction == "out" and r.reply_to is None and r.status in FINAL_REPLY
    ]
    held: set[int] = set()
    if inbound:
        held = {
            int(row.reply_to)
            for row in conn.execute(
                select(messages.c.reply_to).where(
                    messages.c.reply_to.in_(_IDS),
                    or_(messages.c.status.not_in(FINAL_REPLY), messages.c.created_at >= cutoff),
                ),
                {"ids": inbound},
            )
        }
    doomed = [i for i in inbound if i not in held]
    replies: list[int] = []
    if doomed:
        replies = [
            int(row.id)
            for row in conn.execute(
                select(messages.c.id).where(messages.c.reply_to.in_(_IDS)), {"ids": doomed}
            )
        ]
    next_cursor = _next_cursor(window, messages.c.created_at, size)
    if dry_run:
        return _Batch(len(doomed) + len(replies) + len(lone), next_cursor)
    deleted = 0
    if replies or lone:
        # The status test again: on PostgreSQL another transaction may have changed a
        # row since it was read (under SQLite's writer lock nothing can).
        result = conn.execute(
            delete(messages).where(
                messages.c.id.in_(_IDS),
                messages.c.direction == "out",
                messages.c.status.in_(FINAL_REPLY),
            ),
            {"ids": replies + lone},
        )
        deleted += int(result.rowcount or 0)
    if doomed:
        # An inbound that still has a reply (one kept above) stays with it.
        result = conn.execute(
            delete(messages).where(
                messages.c.id.in_(_IDS),
                messages.c.direction == "in",
                messages.c.status == PROCESSED,
                ~exists().where(_reply.c.reply_to == messages.c.id),
            ),
            {"ids": doomed},
        )
        deleted += int(result.rowcount or 0)
    return _Batch(deleted, next_cursor)


def _rows_batch(table: Table, time_column: Column[Any]) -> _BatchWork:
    """A batch for a table whose rows go simply by age."""

    def batch(
        cutoff: datetime, cursor: _Cursor, size: int, dry_run: bool, conn: Connection
    ) -> _Batch:
        window = _window(conn, table, time_column, cutoff, cursor, size)
        ids = [int(r.id) for r in window]
        next_cursor = _next_cursor(window, time_column, size)
        if dry_run or not ids:
            return _Batch(len(ids), next_cursor)
        result = conn.execute(
            delete(table).where(table.c.id.in_(_IDS), time_column < cutoff), {"ids": ids}
        )
        return _Batch(int(result.rowcount or 0), next_cursor)

    return batch


async def _run(store: SqlStore, work: Callable[[Connection], T], dry_run: bool) -> T:
    if dry_run:
        # Reads only: on SQLite the reader engine, which never takes the write lock.
        async with store.reader() as tx:
            return await tx.conn.run_sync(work)
    return await store.run_transaction(work)


async def _walk(
    store: SqlStore,
    batch: _BatchWork,
    cutoff: datetime,
    size: int,
    pause_s: float,
    dry_run: bool,
) -> tuple[int, int]:
    """Batches until the table's rows older than the cutoff are all looked at:
    (rows deleted, batches)."""
    deleted = batches = 0
    cursor: _Cursor = None
    while True:
        done = await _run(store, functools.partial(batch, cutoff, cursor, size, dry_run), dry_run)
        deleted += done.deleted
        batches += 1
        if done.cursor is None:
            return deleted, batches
        cursor = done.cursor
        await asyncio.sleep(pause_s)


async def prune(
    store: SqlStore,
    keep: timedelta,
    *,
    now: datetime,
    batch_size: int = BATCH_SIZE,
    pause_s: float = PAUSE_S,
    dry_run: bool = False,
) -> PruneCounts:
    """Delete what is older than `now - keep` (see the module docstring); the counts.

    dry_run: count what would go, deleting nothing (and never taking the write lock).
    """
    if keep <= timedelta(0):
        raise ValueError("keep must be a positive time")
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be 1..{MAX_BATCH_SIZE}")
    cutoff = to_db_time(now - keep)
    parts_cutoff = max(cutoff, to_db_time(now - PARTS_ORPHANED_AFTER))
    walks = (
        ("messages", _messages_batch, cutoff),
        ("inbound_parts", _rows_batch(inbound_parts, inbound_parts.c.received_at), parts_cutoff),
        (
            "pending_confirmations",
            _rows_batch(pending_confirmations, pending_confirmations.c.created_at),
            cutoff,
        ),
        (
            "ops_login_failures",
            _rows_batch(ops_login_failures, ops_login_failures.c.failed_at),
            cutoff,
        ),
    )
    deleted: dict[str, int] = {}
    batches = 0
    for table, batch, table_cutoff in walks:
        deleted[table], taken = await _walk(
            store, batch, table_cutoff, batch_size, pause_s, dry_run
        )
        batches += taken
        await asyncio.sleep(pause_s)
    return PruneCounts(
        messages=deleted["messages"],
        inbound_parts=deleted["inbound_parts"],
        pending_confirmations=deleted["pending_confirmations"],
        ops_login_failures=deleted["ops_login_failures"],
        batches=batches,
    )
