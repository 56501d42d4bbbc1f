"""Recording Twilio status callbacks on our reply rows (SQLAlchemy Core, our own query).

A reply sent as TwiML has no Twilio MessageSid when we store it: Twilio creates the
outbound message after reading our answer. The `<Message action=...?reply=ID>` URL
carries our reply id through Twilio, so the first status callback links Twilio's
MessageSid to the row (`transport_id`); callbacks without the id (REST sends, whose
sid we stored when sending) are matched by MessageSid.
"""

from __future__ import annotations

from sqlalchemy import select, update

from adapters.db.schema import messages
from adapters.db.store import SqlStore
from adapters.twilio.messages import CHANNEL, supersedes


async def record_twilio_status(
    store: SqlStore, reply_id: int | None, sid: str, status: str, error: str | None
) -> bool:
    """Record `status` on the reply; False when no Twilio reply matches."""
    match = messages.c.id == reply_id if reply_id is not None else messages.c.transport_id == sid
    async with store.transaction() as tx:
        row = (
            await tx.conn.execute(
                select(messages.c.id, messages.c.transport_id, messages.c.delivery_status).where(
                    match, messages.c.direction == "out", messages.c.channel == CHANNEL
                )
            )
        ).first()
        if row is None:
            return False
        values: dict[str, str | None] = {}
        # A retried webhook makes Twilio send our TwiML again under a new sid; the
        # first sid stays the one we show, the furthest status of either is kept.
        if row.transport_id is None:
            values["transport_id"] = sid
        if supersedes(row.delivery_status, status):
            values["delivery_status"] = status
            values["error"] = error
        if values:
            await tx.conn.execute(update(messages).where(messages.c.id == row.id).values(values))
    return True
