"""The outbox: replies waiting for a transport, stored in the message log."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection

from adapters.db.group_commit import GroupCommit
from adapters.db.store import (
    SqlStore,
    claim_outbound,
    claim_outbound_one,
    expire_outbound,
    record_delivery_status,
    release_stale_outbound,
    set_outbound_statuses,
)
from sms_gateway.ports import OutboundSms


class SqlOutbox:
    """Implements ports.Outbox on the messages table; status changes are group-committed."""

    def __init__(
        self, store: SqlStore, clock: Callable[[], datetime], instance: str | None = None
    ) -> None:
        self.store = store
        self.clock = clock
        # Claims carry it: when this instance dies, another knows whose they were.
        self.instance = instance
        self.commits = GroupCommit(store)
        self._status_changes: list[dict[str, object]] = []

    async def claim(
        self, channel: str, limit: int, groups: Collection[str] | None = None
    ) -> list[OutboundSms]:
        now = self.clock()
        wanted = None if groups is None else sorted(groups)
        return await self.commits.run(
            lambda conn: claim_outbound(conn, channel, limit, now, self.instance, wanted)
        )

    async def claim_one(self, outbound_id: int) -> bool:
        """Take this one pending reply; False when another sender took it first."""
        now = self.clock()
        claimed: bool = await self.commits.run(
            lambda conn: claim_outbound_one(conn, outbound_id, now, self.instance)
        )
        return claimed

    async def mark_sent(self, outbound_id: int, transport_id: str | None) -> None:
        await self._set_status(outbound_id, "sent", transport_id, None)

    async def mark_sent_many(self, sent: Sequence[tuple[int, str | None]]) -> None:
        self._status_changes.extend(
            {"b_id": outbound_id, "status": "sent", "transport_id": transport_id, "error": None}
            for outbound_id, transport_id in sent
        )
        await self.commits.run(self._flush_status_changes, ride_along=True)

    async def mark_failed(self, outbound_id: int, error: str) -> None:
        await self._set_status(outbound_id, "failed", None, error)

    async def release(self, outbound_id: int, error: str | None = None) -> None:
        await self._set_status(outbound_id, "pending", None, error)

    async def _set_status(
        self, outbound_id: int, status: str, transport_id: str | None, error: str | None
    ) -> None:
        # Every reply sent changes its row: the changes waiting for the next commit go
        # out as one executemany, not one statement (and one thread hop) each.
        self._status_changes.append(
            {"b_id": outbound_id, "status": status, "transport_id": transport_id, "error": error}
        )
        await self.commits.run(self._flush_status_changes, ride_along=True)

    def _flush_status_changes(self, conn: Connection) -> None:
        changes, self._status_changes = self._status_changes, []
        if changes:
            set_outbound_statuses(conn, changes)

    async def record_delivery_status(
        self, transport_id: str, status: str, error: str | None = None
    ) -> bool:
        matched: bool = await self.commits.run(
            lambda conn: record_delivery_status(conn, transport_id, status, error)
        )
        return matched

    async def release_stale(self, older_than: timedelta, keep: Collection[int] = ()) -> int:
        """Replies claimed by a sender that died go back to pending (run periodically).

        `keep`: the ids this instance is still sending.
        """
        cutoff = self.clock() - older_than
        kept = frozenset(keep)
        released: int = await self.commits.run(
            lambda conn: release_stale_outbound(conn, cutoff, kept)
        )
        return released

    async def expire(self, channel: str, older_than: timedelta) -> int:
        """Replies that waited longer than `older_than` for a link: failed, with why."""
        seconds = int(older_than.total_seconds())
        error = f"not sent within {seconds} s: no bound link of its group (link_group)"
        cutoff = self.clock() - older_than
        expired: int = await self.commits.run(
            lambda conn: expire_outbound(conn, channel, cutoff, error)
        )
        return expired

    async def depth(self) -> int:
        async with self.store.reader() as tx:
            return await tx.outbox_depth()

    async def aclose(self) -> None:
        await self.commits.aclose()
