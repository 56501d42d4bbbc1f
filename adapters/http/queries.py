"""The read queries behind the ops dashboard, in SQLAlchemy Core on the shared schema.

They live here rather than in the store because only the dashboard needs them: hourly
counts, the outcome mix and conversations (an inbound SMS joined with our reply).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, func, insert, or_, select

from adapters.db.schema import accounts, instances, messages, ops_login_failures
from adapters.db.store import SqlStore, from_db_time, to_db_time


@dataclass(frozen=True, slots=True)
class Conversation:
    """One inbound SMS with the reply we sent to it (if any)."""

    inbound_id: int
    created_at: datetime
    channel: str
    phone: str
    account: str | None
    text: str
    outcome: str | None
    reply_id: int | None
    reply_text: str | None
    reply_status: str | None
    delivery_status: str | None
    delivery_error: str | None


async def conversations(
    store: SqlStore,
    *,
    phone: str | None = None,
    account: str | None = None,
    outcome: str | None = None,
    limit: int = 50,
) -> list[Conversation]:
    """The latest inbound SMS, newest first; phone and account: either may match."""
    reply = messages.alias("reply")
    inbound = messages
    stmt = (
        select(
            inbound.c.id,
            inbound.c.created_at,
            inbound.c.channel,
            inbound.c.phone,
            inbound.c.account,
            inbound.c.text,
            inbound.c.outcome,
            reply.c.id.label("reply_id"),
            reply.c.text.label("reply_text"),
            reply.c.status.label("reply_status"),
            reply.c.delivery_status,
            reply.c.error.label("delivery_error"),
        )
        .select_from(inbound.outerjoin(reply, reply.c.reply_to == inbound.c.id))
        .where(inbound.c.direction == "in")
        .order_by(inbound.c.id.desc())
        .limit(limit)
    )
    matches = []
    if phone:
        matches.append(inbound.c.phone == phone)
    if account:
        matches.append(inbound.c.account == account)
    if matches:
        stmt = stmt.where(or_(*matches))
    if outcome:
        stmt = stmt.where(inbound.c.outcome == outcome)
    async with store.reader() as tx:
        rows = (await tx.conn.execute(stmt)).all()
    out = []
    for row in rows:
        created = from_db_time(row.created_at)
        out.append(
            Conversation(
                inbound_id=int(row.id),
                created_at=created,
                channel=row.channel,
                phone=row.phone,
                account=row.account,
                text=row.text,
                outcome=row.outcome,
                reply_id=row.reply_id,
                reply_text=row.reply_text,
                reply_status=row.reply_status,
                delivery_status=row.delivery_status,
                delivery_error=row.delivery_error,
            )
        )
    return out


async def inbound_per_hour(store: SqlStore, since: datetime) -> dict[datetime, int]:
    """Inbound SMS counted per UTC hour from `since` on (hours without traffic absent)."""
    created = messages.c.created_at
    if store.dialect == "postgresql":
        hour = func.date_trunc("hour", created)
    else:
        # SQLite stores naive UTC text: the first 13 characters name the hour.
        hour = func.strftime("%Y-%m-%d %H:00:00", created)
    stmt = (
        select(hour.label("hour"), func.count().label("n"))
        .where(messages.c.direction == "in", created >= to_db_time(since))
        .group_by(hour)
    )
    async with store.reader() as tx:
        rows = (await tx.conn.execute(stmt)).all()
    counts: dict[datetime, int] = {}
    for row in rows:
        moment = row.hour if isinstance(row.hour, datetime) else datetime.fromisoformat(row.hour)
        counts[moment.replace(tzinfo=UTC)] = int(row.n)
    return counts


async def outcome_mix(store: SqlStore, since: datetime) -> dict[str | None, int]:
    """How many inbound SMS since `since` ended in each outcome (None: not handled yet)."""
    stmt = (
        select(messages.c.outcome, func.count().label("n"))
        .where(messages.c.direction == "in", messages.c.created_at >= to_db_time(since))
        .group_by(messages.c.outcome)
    )
    async with store.reader() as tx:
        rows = (await tx.conn.execute(stmt)).all()
    return {row.outcome: int(row.n) for row in rows}


async def account_exists(store: SqlStore, account: str) -> bool:
    async with store.reader() as tx:
        found = await tx.conn.execute(
            select(accounts.c.account).where(accounts.c.account == account)
        )
        return found.first() is not None


async def inbound_queue_depth(store: SqlStore) -> int:
    """Inbound SMS stored but not yet processed."""
    async with store.reader() as tx:
        result = await tx.conn.execute(
            select(func.count())
            .select_from(messages)
            .where(messages.c.direction == "in", messages.c.status == "received")
        )
        return int(result.scalar_one())


async def recent_login_failures(
    store: SqlStore, address: str, since: datetime
) -> tuple[int, datetime | None]:
    """Wrong ops tokens from `address` after `since`: how many, and the oldest."""
    async with store.reader() as tx:
        row = (
            await tx.conn.execute(
                select(func.count(), func.min(ops_login_failures.c.failed_at)).where(
                    ops_login_failures.c.address == address,
                    ops_login_failures.c.failed_at > to_db_time(since),
                )
            )
        ).one()
    return int(row[0]), from_db_time(row[1]) if row[1] is not None else None


async def record_login_failure(
    store: SqlStore, address: str, at: datetime, forget_before: datetime
) -> None:
    """One more wrong token from `address`; rows past the window go at the same time."""
    async with store.transaction() as tx:
        await tx.conn.execute(
            delete(ops_login_failures).where(
                ops_login_failures.c.failed_at <= to_db_time(forget_before)
            )
        )
        await tx.conn.execute(
            insert(ops_login_failures).values(address=address, failed_at=to_db_time(at))
        )


async def forget_login_failures(store: SqlStore, address: str) -> None:
    async with store.transaction() as tx:
        await tx.conn.execute(
            delete(ops_login_failures).where(ops_login_failures.c.address == address)
        )


async def instance_rows(
    store: SqlStore, now: datetime, dead_after_s: float
) -> list[dict[str, object]]:
    """Every instance that ran on this database, with the age of its heartbeat and
    whether it counts as alive (a stopped or taken-over one does not)."""
    async with store.reader() as tx:
        result = await tx.conn.execute(select(instances).order_by(instances.c.name))
        out: list[dict[str, object]] = []
        for row in result:
            beat = from_db_time(row.heartbeat_at)
            age = (now - beat).total_seconds()
            out.append(
                {
                    "name": row.name,
                    "host": row.host,
                    "pid": row.pid,
                    "started_at": from_db_time(row.started_at).isoformat(),
                    "heartbeat_at": beat.isoformat(),
                    "heartbeat_age_s": round(age, 1),
                    "alive": row.released_at is None and age <= dead_after_s,
                    "stopped_at": (
                        from_db_time(row.released_at).isoformat() if row.released_at else None
                    ),
                }
            )
        return out


async def link_traffic(store: SqlStore, since: datetime) -> dict[tuple[str, str], int]:
    """{(link, direction): messages since `since`}: each SMPP link's MO and replies."""
    async with store.reader() as tx:
        result = await tx.conn.execute(
            select(messages.c.link, messages.c.direction, func.count())
            .where(messages.c.created_at >= to_db_time(since), messages.c.link.is_not(None))
            .group_by(messages.c.link, messages.c.direction)
        )
        return {(row[0], row[1]): int(row[2]) for row in result}
