"""Durable parts of concatenated MO: an SMSC's ack for a part means it is on disk.

The table is shared by every instance on the database: `load_group` is how an
instance sees the parts other instances' binds received (adapters/smpp/reassembly.py).

When a message is handed on, its parts are replaced by a marker row (sequence 0) kept
for `handed_on_ttl_s` (the reassembly timeout): a part the SMSC redelivers to another
instance's bind in that time is recognised there as late, as the handing instance
recognises it from memory, instead of becoming a one-part incomplete message with a
reply of its own. After the TTL the same group key is a new message (phones reuse
concatenation references); stale markers go with the next discard.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, exists, select
from sqlalchemy.engine import Connection

from adapters.db.group_commit import GroupCommit
from adapters.db.schema import inbound_parts
from adapters.db.store import from_db_time, to_db_time, upsert_into
from adapters.smpp.reassembly import MessagePart

HANDED_ON = 0  # the sequence number of the marker row
# The table again under another name, so subqueries over it are not correlated with
# the statement around them (which would test the outer row instead).
_marker = inbound_parts.alias("marker")


class SqlPartStore:
    """Implements adapters.smpp.PartStore on the inbound_parts table."""

    durable = True

    def __init__(self, commits: GroupCommit, handed_on_ttl_s: float = 60.0) -> None:
        self.commits = commits
        self.handed_on_ttl = timedelta(seconds=handed_on_ttl_s)

    def _cutoff(self, now: datetime | None = None) -> datetime:
        """Markers older than this are stale: their key may start a new message."""
        return to_db_time((now or datetime.now(UTC)) - self.handed_on_ttl)

    async def save(self, part: MessagePart) -> None:
        def write(conn: Connection) -> None:
            # A marker older than the TTL: this part starts a new message under the
            # same key, so what the old one left goes first.
            conn.execute(
                delete(inbound_parts).where(
                    inbound_parts.c.group_key == part.group_key,
                    exists().where(
                        _marker.c.group_key == part.group_key,
                        _marker.c.sequence == HANDED_ON,
                        _marker.c.received_at < self._cutoff(),
                    ),
                )
            )
            stmt = (
                upsert_into(conn, inbound_parts)
                .values(
                    group_key=part.group_key,
                    sequence=part.sequence,
                    total=part.total,
                    reference=part.reference,
                    source_addr=part.source_addr,
                    destination_addr=part.destination_addr,
                    phone=part.phone,
                    data_coding=part.data_coding,
                    body=part.body,
                    external_id=part.external_id,
                    received_at=to_db_time(part.received_at),
                )
                # A redelivered part is already held: the first copy (and its
                # received_at) stays, so every instance joins the same values.
                .on_conflict_do_nothing()
            )
            conn.execute(stmt)

        await self.commits.run(write)

    async def discard(self, group_key: str) -> None:
        def remove(conn: Connection) -> None:
            now = datetime.now(UTC)
            conn.execute(delete(inbound_parts).where(inbound_parts.c.group_key == group_key))
            conn.execute(
                upsert_into(conn, inbound_parts)
                .values(
                    group_key=group_key,
                    sequence=HANDED_ON,
                    total=0,
                    reference=0,
                    source_addr="",
                    destination_addr="",
                    phone="",
                    data_coding=0,
                    body=b"",
                    received_at=to_db_time(now),
                )
                .on_conflict_do_nothing()
            )
            # Markers past their TTL, with any late part that came under them.
            stale = (
                select(_marker.c.group_key)
                .where(
                    _marker.c.sequence == HANDED_ON,
                    _marker.c.received_at < self._cutoff(now),
                )
                .scalar_subquery()
            )
            conn.execute(delete(inbound_parts).where(inbound_parts.c.group_key.in_(stale)))

        await self.commits.run(remove)

    async def load(self) -> list[MessagePart]:
        """Parts of messages not handed on yet (groups with a marker are left alone)."""
        marked = select(_marker.c.group_key).where(_marker.c.sequence == HANDED_ON)
        async with self.commits.store.reader() as tx:
            rows = await tx.conn.execute(
                select(inbound_parts)
                .where(inbound_parts.c.group_key.not_in(marked.scalar_subquery()))
                .order_by(inbound_parts.c.group_key, inbound_parts.c.sequence)
            )
            return [_part(row) for row in rows]

    async def load_group(self, group_key: str) -> list[MessagePart]:
        """Empty when the message was handed on (a marker younger than the TTL)."""
        # The reader engine: on SQLite it does not queue behind the writer thread, and
        # a committed save of another instance is visible (WAL; a fresh transaction).
        async with self.commits.store.reader() as tx:
            rows = (
                await tx.conn.execute(
                    select(inbound_parts)
                    .where(inbound_parts.c.group_key == group_key)
                    .order_by(inbound_parts.c.sequence)
                )
            ).all()
        cutoff = self._cutoff()
        if any(r.sequence == HANDED_ON and r.received_at >= cutoff for r in rows):
            return []
        return [_part(row) for row in rows if row.sequence != HANDED_ON]


def _part(row: Any) -> MessagePart:
    return MessagePart(
        group_key=row.group_key,
        source_addr=row.source_addr,
        destination_addr=row.destination_addr,
        phone=row.phone,
        reference=row.reference,
        total=row.total,
        sequence=row.sequence,
        data_coding=row.data_coding,
        body=bytes(row.body),
        received_at=from_db_time(row.received_at),
        external_id=row.external_id,
    )
