"""The narrow surfaces adapters use to reach the core, and the core to reach storage.

Transport adapters (SMPP, Twilio, CLI) see only `InboundPipeline` and `Outbox`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sms_gateway.domain.model import InboundSms, Reply


@dataclass(frozen=True, slots=True)
class AcceptedInbound:
    """An inbound SMS that is durably stored (or recognised as a redelivery)."""

    inbound_id: int
    inbound: InboundSms
    # True when the same message (same external id / dedupe key) was stored before.
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class OutboundSms:
    """A reply waiting in the outbox for its transport."""

    id: int
    channel: str
    phone: str  # E.164
    short_number: str
    text: str
    inbound_id: int | None
    attempts: int
    created_at: datetime
    # SMPP: the link to send it on (its MO's), and the group whose links may carry it.
    link: str | None = None
    link_group: str | None = None


class InboundPipeline(Protocol):
    async def accept(self, inbound: InboundSms) -> AcceptedInbound:
        """Store the inbound SMS durably; raise TemporaryFailure when that is impossible.

        Only after this returns may a transport acknowledge the message.
        """
        ...

    async def process(self, accepted: AcceptedInbound) -> Reply:
        """Parse, validate, book and store the reply (in the outbox for queued channels)."""
        ...

    def receive(
        self, inbound: InboundSms, acknowledge: Callable[[AcceptedInbound], None]
    ) -> asyncio.Future[Reply]:
        """Store and process in one transaction, then `acknowledge(accepted)`, then the
        Reply: for transports that acknowledge a message once it is stored (SMPP). It
        returns at once: the future holds the Reply (or the error).

        An error before `acknowledge` was called: the message is not stored (do not
        acknowledge it). Should processing fail, the message is stored alone,
        acknowledged, and the error follows (recovery processes it later). An
        acknowledge that raises, or a caller cancelled before it, leaves the message
        handled and in doubt: the SMSC's redelivery of it gets no second reply.
        Raises TemporaryFailure at once when the pipeline is shutting down.
        """
        ...

    async def handle(self, inbound: InboundSms) -> Reply:
        """accept + process, for transports that answer inline (CLI, Twilio)."""
        ...

    async def unconfirmed(self, inbound_ids: Sequence[int]) -> None:
        """These stored MO were acknowledged, but the acknowledgement may not have
        reached the sender (the link died first): the next copy with the same text
        from the same phone is their redelivery, not a new message."""
        ...


class Outbox(Protocol):
    async def claim(
        self, channel: str, limit: int, groups: Collection[str] | None = None
    ) -> list[OutboundSms]:
        """Take up to `limit` pending replies for this instance (skip-locked on
        PostgreSQL); with `groups`, only those of these SMPP link groups (or of none)."""
        ...

    async def mark_sent(self, outbound_id: int, transport_id: str | None) -> None: ...

    async def mark_sent_many(self, sent: Sequence[tuple[int, str | None]]) -> None:
        """mark_sent for each (outbound_id, transport_id), in one commit."""
        ...

    async def mark_failed(self, outbound_id: int, error: str) -> None: ...

    async def release(self, outbound_id: int, error: str | None = None) -> None:
        """Give a claimed reply back to the outbox to be sent again later."""
        ...

    async def record_delivery_status(
        self, transport_id: str, status: str, error: str | None = None
    ) -> bool:
        """Record a delivery receipt / status callback; False when no reply matches."""
        ...


class DirectSender(Protocol):
    """A transport that takes replies straight from the handling batch (SMPP)."""

    def accepts_direct(self, link_group: str | None) -> bool:
        """Ready now to send a reply of this link group? Called from the database
        writer thread."""
        ...

    def offer(self, replies: list[OutboundSms]) -> None:
        """Send these replies, stored as claimed by this instance ("sending")."""
        ...
