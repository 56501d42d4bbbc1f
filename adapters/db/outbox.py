"""The outbox: replies waiting for a transport, stored in the message log."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from adapters.db.store import SqlStore
from sms_gateway.ports import OutboundSms


class SqlOutbox:
    """Implements ports.Outbox on the messages table."""

    def __init__(self, store: SqlStore, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.clock = clock

    async def claim(self, channel: str, limit: int) -> list[OutboundSms]:
        async with self.store.transaction() as tx:
            return await tx.claim_outbound(channel, limit, self.clock())

    async def mark_sent(self, outbound_id: int, transport_id: str | None) -> None:
        async with self.store.transaction() as tx:
            await tx.set_outbound_status(outbound_id, "sent", transport_id=transport_id)

    async def mark_failed(self, outbound_id: int, error: str) -> None:
        async with self.store.transaction() as tx:
            await tx.set_outbound_status(outbound_id, "failed", error=error)

    async def release(self, outbound_id: int, error: str | None = None) -> None:
        async with self.store.transaction() as tx:
            await tx.set_outbound_status(outbound_id, "pending", error=error)

    async def record_delivery_status(
        self, transport_id: str, status: str, error: str | None = None
    ) -> bool:
        async with self.store.transaction() as tx:
            return await tx.record_delivery_status(transport_id, status, error)

    async def release_stale(self, older_than: timedelta) -> int:
        """Replies claimed by a sender that died: pending again (at start-up)."""
        async with self.store.transaction() as tx:
            return await tx.release_stale_outbound(self.clock() - older_than)

    async def depth(self) -> int:
        async with self.store.reader() as tx:
            return await tx.outbox_depth()
