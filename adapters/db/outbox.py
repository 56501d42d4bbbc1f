"""The outbox: replies waiting for a transport, stored in the message log."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from adapters.db.group_commit import GroupCommit
from adapters.db.store import SqlStore
from sms_gateway.ports import OutboundSms


class SqlOutbox:
    """Implements ports.Outbox on the messages table; status changes are group-committed."""

    def __init__(self, store: SqlStore, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.clock = clock
        self.commits = GroupCommit(store)

    async def claim(self, channel: str, limit: int) -> list[OutboundSms]:
        now = self.clock()
        return await self.commits.run(lambda tx: tx.claim_outbound(channel, limit, now))

    async def mark_sent(self, outbound_id: int, transport_id: str | None) -> None:
        await self.commits.run(
            lambda tx: tx.set_outbound_status(outbound_id, "sent", transport_id=transport_id)
        )

    async def mark_failed(self, outbound_id: int, error: str) -> None:
        await self.commits.run(
            lambda tx: tx.set_outbound_status(outbound_id, "failed", error=error)
        )

    async def release(self, outbound_id: int, error: str | None = None) -> None:
        await self.commits.run(
            lambda tx: tx.set_outbound_status(outbound_id, "pending", error=error)
        )

    async def record_delivery_status(
        self, transport_id: str, status: str, error: str | None = None
    ) -> bool:
        matched: bool = await self.commits.run(
            lambda tx: tx.record_delivery_status(transport_id, status, error)
        )
        return matched

    async def release_stale(self, older_than: timedelta) -> int:
        """Replies claimed by a sender that died: pending again (at start-up)."""
        cutoff = self.clock() - older_than
        released: int = await self.commits.run(lambda tx: tx.release_stale_outbound(cutoff))
        return released

    async def depth(self) -> int:
        async with self.store.reader() as tx:
            return await tx.outbox_depth()

    async def aclose(self) -> None:
        await self.commits.aclose()
