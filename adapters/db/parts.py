"""Durable parts of concatenated MO: an SMSC's ack for a part means it is on disk.

The table is shared by every instance on the database: `load_group` is how an
instance sees the parts other instances' binds received (adapters/smpp/reassembly.py).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection

from adapters.db.group_commit import GroupCommit
from adapters.db.schema import inbound_parts
from adapters.db.store import from_db_time, to_db_time, upsert_into
from adapters.smpp.reassembly import MessagePart


class SqlPartStore:
    """Implements adapters.smpp.PartStore on the inbound_parts table."""

    durable = True

    def __init__(self, commits: GroupCommit) -> None:
        self.commits = commits

    async def save(self, part: MessagePart) -> None:
        def write(conn: Connection) -> None:
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
            conn.execute(delete(inbound_parts).where(inbound_parts.c.group_key == group_key))

        await self.commits.run(remove)

    async def load(self) -> list[MessagePart]:
        async with self.commits.store.reader() as tx:
            rows = await tx.conn.execute(
                select(inbound_parts).order_by(inbound_parts.c.group_key, inbound_parts.c.sequence)
            )
            return [_part(row) for row in rows]

    async def load_group(self, group_key: str) -> list[MessagePart]:
        # The reader engine: on SQLite it does not queue behind the writer thread, and
        # a committed save of another instance is visible (WAL; a fresh transaction).
        async with self.commits.store.reader() as tx:
            rows = await tx.conn.execute(
                select(inbound_parts)
                .where(inbound_parts.c.group_key == group_key)
                .order_by(inbound_parts.c.sequence)
            )
            return [_part(row) for row in rows]


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
