"""The SQL store: the message log, accounts, meters, readings and the outbox.

One `SqlStore` per process wraps the engine. Work happens in transactions
(`async with store.transaction() as tx`), and a `StoreTransaction` offers the
queries the service needs, in domain terms. Database failures leave this module
as `StoreUnavailable` so transports can answer with a temporary error.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.db.schema import (
    account_phones,
    accounts,
    messages,
    meters,
    pending_confirmations,
    phone_preferences,
    readings,
)
from sms_gateway.domain.model import (
    Account,
    BookedReading,
    InboundSms,
    Meter,
    PreviousReading,
    ReadingStatus,
)
from sms_gateway.errors import StoreUnavailable
from sms_gateway.ports import OutboundSms

_UNAVAILABLE = (OperationalError, InterfaceError, DisconnectionError, OSError, TimeoutError)


def to_db_time(moment: datetime) -> datetime:
    """Aware datetime -> naive UTC, the form every table stores."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def from_db_time(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
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
    delivery_status: str | None
    error: str | None


def _stored_message(row: Any) -> StoredMessage:
    created = from_db_time(row.created_at)
    assert created is not None
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
        delivery_status=row.delivery_status,
        error=row.error,
    )


class SqlStore:
    """The process's gateway to the database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        # SQLite has one writer: serialising our own transactions avoids
        # "database is locked" retries inside one process.
        self._write_lock = asyncio.Lock() if self.dialect == "sqlite" else None

    def _insert(self, table: Any) -> Any:
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[StoreTransaction]:
        """One database transaction; commits on success, rolls back on error."""
        try:
            if self._write_lock is not None:
                async with self._write_lock, self.engine.begin() as conn:
                    yield StoreTransaction(self, conn)
            else:
                async with self.engine.begin() as conn:
                    yield StoreTransaction(self, conn)
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"database unavailable: {exc.__class__.__name__}") from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise StoreUnavailable("database connection lost") from exc
            raise

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[StoreTransaction]:
        """A read-only connection that does not wait for the SQLite writer."""
        try:
            async with self.engine.connect() as conn:
                yield StoreTransaction(self, conn)
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"database unavailable: {exc.__class__.__name__}") from exc

    async def ping(self) -> bool:
        try:
            async with self.reader() as tx:
                await tx.conn.execute(select(1))
            return True
        except StoreUnavailable:
            return False

    async def aclose(self) -> None:
        await self.engine.dispose()


class StoreTransaction:
    """Queries and writes in one transaction, in domain terms."""

    def __init__(self, store: SqlStore, conn: AsyncConnection) -> None:
        self.store = store
        self.conn = conn

    # -- the message log --------------------------------------------------

    async def insert_inbound(self, inbound: InboundSms) -> tuple[int, bool]:
        """Store an inbound SMS; (id, duplicate) where duplicate means it was stored before."""
        values = {
            "direction": "in",
            "channel": inbound.channel,
            "phone": inbound.phone,
            "short_number": inbound.short_number,
            "text": inbound.text,
            "created_at": to_db_time(inbound.received_at),
            "external_id": inbound.external_id,
            "dedupe_key": inbound.dedupe_key,
            "status": "received",
            "attempts": 0,
            "parts": inbound.parts,
            "incomplete": inbound.incomplete,
        }
        stmt = self.store._insert(messages).values(**values).on_conflict_do_nothing()
        result = await self.conn.execute(stmt.returning(messages.c.id))
        new_id = result.scalar_one_or_none()
        if new_id is not None:
            return int(new_id), False
        if inbound.external_id is not None:
            key = messages.c.external_id == inbound.external_id
        else:
            key = messages.c.dedupe_key == inbound.dedupe_key
        existing = await self.conn.execute(
            select(messages.c.id).where(messages.c.channel == inbound.channel, key)
        )
        return int(existing.scalar_one()), True

    async def insert_inbound_many(self, inbounds: Sequence[InboundSms]) -> list[tuple[int, bool]]:
        """Store inbound SMS in one statement; (id, duplicate) for each, in order.

        Every inbound carries an external_id or a dedupe_key: a redelivery conflicts
        with the stored row and is answered with that row's id.
        """
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
            }
            for m in inbounds
        ]
        # executemany, not one multi-VALUES statement: the compiled form is cached
        # and SQLAlchemy batches the rows itself ("insertmanyvalues").
        stmt = (
            self.store._insert(messages)
            .on_conflict_do_nothing()
            .returning(
                messages.c.id, messages.c.channel, messages.c.external_id, messages.c.dedupe_key
            )
        )
        inserted: dict[tuple[str, str | None, str | None], int] = {}
        for row in await self.conn.execute(stmt, rows):
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
            existing = await self.conn.execute(
                select(messages.c.id).where(messages.c.channel == m.channel, key)
            )
            out.append((int(existing.scalar_one()), True))
        return out

    async def claim_inbound(self, inbound_id: int) -> bool:
        """Lock the inbound row for processing; False when it was processed already."""
        stmt = select(messages.c.status).where(messages.c.id == inbound_id)
        if self.store.dialect == "postgresql":
            stmt = stmt.with_for_update()
        status = (await self.conn.execute(stmt)).scalar_one_or_none()
        return status == "received"

    async def finish_inbound(
        self, inbound_id: int, outcome: str, account: str | None, now: datetime
    ) -> None:
        await self.conn.execute(
            update(messages)
            .where(messages.c.id == inbound_id)
            .values(
                status="processed", outcome=outcome, account=account, processed_at=to_db_time(now)
            )
        )

    async def insert_reply(
        self,
        *,
        inbound_id: int,
        inbound: InboundSms,
        text: str,
        outcome: str,
        account: str | None,
        status: str,
        now: datetime,
    ) -> int:
        result = await self.conn.execute(
            insert(messages)
            .values(
                direction="out",
                channel=inbound.channel,
                phone=inbound.phone,
                short_number=inbound.short_number,
                text=text,
                outcome=outcome,
                account=account,
                created_at=to_db_time(now),
                reply_to=inbound_id,
                status=status,
                attempts=0,
                parts=1,
                incomplete=False,
            )
            .returning(messages.c.id)
        )
        return int(result.scalar_one())

    async def reply_for(self, inbound_id: int) -> tuple[str | None, str | None, int | None]:
        """(inbound outcome, reply text, reply id) for an inbound SMS handled before."""
        inbound_row = (
            await self.conn.execute(select(messages.c.outcome).where(messages.c.id == inbound_id))
        ).first()
        reply_row = (
            await self.conn.execute(
                select(messages.c.id, messages.c.text).where(messages.c.reply_to == inbound_id)
            )
        ).first()
        return (
            inbound_row.outcome if inbound_row else None,
            reply_row.text if reply_row else None,
            reply_row.id if reply_row else None,
        )

    async def count_inbound_since(self, phone: str, since: datetime) -> int:
        result = await self.conn.execute(
            select(func.count())
            .select_from(messages)
            .where(
                messages.c.phone == phone,
                messages.c.direction == "in",
                messages.c.created_at >= to_db_time(since),
            )
        )
        return int(result.scalar_one())

    async def replied_with_since(self, phone: str, outcome: str, since: datetime) -> bool:
        result = await self.conn.execute(
            select(messages.c.id)
            .where(
                messages.c.phone == phone,
                messages.c.direction == "out",
                messages.c.outcome == outcome,
                messages.c.created_at >= to_db_time(since),
            )
            .limit(1)
        )
        return result.first() is not None

    async def unprocessed_inbound(self, channel: str, limit: int) -> list[tuple[int, InboundSms]]:
        """Inbound SMS stored but never processed (e.g. the process died in between)."""
        rows = await self.conn.execute(
            select(messages)
            .where(
                messages.c.direction == "in",
                messages.c.status == "received",
                messages.c.channel == channel,
            )
            .order_by(messages.c.id)
            .limit(limit)
        )
        out = []
        for row in rows:
            received_at = from_db_time(row.created_at)
            assert received_at is not None
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
        wanted = sorted(set(account_ids))
        if not wanted:
            return {}
        meter_rows = (
            await self.conn.execute(
                select(meters).where(meters.c.account.in_(wanted)).order_by(meters.c.id)
            )
        ).all()
        phone_rows = (
            await self.conn.execute(
                select(account_phones.c.account, account_phones.c.phone).where(
                    account_phones.c.account.in_(wanted)
                )
            )
        ).all()
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

    async def accounts_for_phone(self, phone: str) -> list[str]:
        rows = await self.conn.execute(
            select(account_phones.c.account)
            .where(account_phones.c.phone == phone)
            .order_by(account_phones.c.account)
        )
        return [row.account for row in rows]

    async def bind_phone(self, account: str, phone: str, now: datetime) -> None:
        stmt = (
            self.store._insert(account_phones)
            .values(account=account, phone=phone, source="reg", created_at=to_db_time(now))
            .on_conflict_do_nothing()
        )
        await self.conn.execute(stmt)

    async def is_opted_out(self, phone: str) -> bool:
        result = await self.conn.execute(
            select(phone_preferences.c.opted_out).where(phone_preferences.c.phone == phone)
        )
        return bool(result.scalar_one_or_none())

    async def set_opted_out(self, phone: str, opted_out: bool, now: datetime) -> None:
        stmt = self.store._insert(phone_preferences).values(
            phone=phone, opted_out=opted_out, updated_at=to_db_time(now)
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[phone_preferences.c.phone],
            set_={"opted_out": opted_out, "updated_at": to_db_time(now)},
        )
        await self.conn.execute(stmt)

    # -- readings ----------------------------------------------------------

    async def previous_reading(self, meter: Meter, before_period: str) -> PreviousReading | None:
        """The latest reading before `before_period`: booked earlier, or the imported one."""
        row = (
            await self.conn.execute(
                select(readings)
                .where(readings.c.meter_id == meter.id, readings.c.period < before_period)
                .order_by(readings.c.period.desc())
                .limit(1)
            )
        ).first()
        booked = None
        if row is not None:
            submitted = from_db_time(row.submitted_at)
            assert submitted is not None
            booked = PreviousReading(_values(row, meter.zones), submitted.date())
        imported = (
            PreviousReading(meter.last_values, meter.last_read_on)
            if meter.last_values is not None and meter.last_read_on is not None
            else None
        )
        if booked is None:
            return imported
        if imported is None or booked.read_on >= imported.read_on:
            return booked
        return imported

    async def reading_in_period(self, meter: Meter, period: str) -> BookedReading | None:
        row = (
            await self.conn.execute(
                select(readings).where(readings.c.meter_id == meter.id, readings.c.period == period)
            )
        ).first()
        return self._booked(meter, row) if row is not None else None

    async def latest_reading(self, meter: Meter) -> BookedReading | None:
        row = (
            await self.conn.execute(
                select(readings)
                .where(readings.c.meter_id == meter.id)
                .order_by(readings.c.period.desc())
                .limit(1)
            )
        ).first()
        return self._booked(meter, row) if row is not None else None

    @staticmethod
    def _booked(meter: Meter, row: Any) -> BookedReading:
        submitted = from_db_time(row.submitted_at)
        assert submitted is not None
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

    async def book_reading(self, reading: BookedReading) -> None:
        """Insert the period's reading, or replace the one already booked."""
        values = {
            **_value_columns(reading.values),
            "status": str(reading.status),
            "submitted_at": to_db_time(reading.submitted_at),
            "channel": reading.channel,
            "phone": reading.phone,
            "inbound_id": reading.inbound_id,
        }
        stmt = self.store._insert(readings).values(
            meter_id=reading.meter.id, period=reading.period, **values
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[readings.c.meter_id, readings.c.period], set_=values
        )
        await self.conn.execute(stmt)

    async def has_pending_confirmation(
        self, phone: str, meter: Meter, values: tuple[int, ...], since: datetime
    ) -> bool:
        columns = _value_columns(values)
        conditions = [
            pending_confirmations.c.phone == phone,
            pending_confirmations.c.meter_id == meter.id,
            pending_confirmations.c.created_at >= to_db_time(since),
        ]
        for name, value in columns.items():
            column = pending_confirmations.c[name]
            conditions.append(column.is_(None) if value is None else column == value)
        result = await self.conn.execute(
            select(pending_confirmations.c.id).where(and_(*conditions)).limit(1)
        )
        return result.first() is not None

    async def add_pending_confirmation(
        self, phone: str, meter: Meter, values: tuple[int, ...], now: datetime
    ) -> None:
        await self.conn.execute(
            insert(pending_confirmations).values(
                phone=phone, meter_id=meter.id, created_at=to_db_time(now), **_value_columns(values)
            )
        )

    async def clear_pending_confirmations(self, phone: str, meter: Meter) -> None:
        await self.conn.execute(
            delete(pending_confirmations).where(
                pending_confirmations.c.phone == phone,
                pending_confirmations.c.meter_id == meter.id,
            )
        )

    # -- the outbox --------------------------------------------------------

    async def claim_outbound(self, channel: str, limit: int, now: datetime) -> list[OutboundSms]:
        pending = (
            select(messages.c.id)
            .where(
                messages.c.direction == "out",
                messages.c.status == "pending",
                messages.c.channel == channel,
            )
            .order_by(messages.c.id)
            .limit(limit)
        )
        if self.store.dialect == "postgresql":
            # Several instances share one outbox: each takes rows nobody holds.
            pending = pending.with_for_update(skip_locked=True)
        result = await self.conn.execute(
            update(messages)
            .where(messages.c.id.in_(pending.scalar_subquery()))
            .values(status="sending", claimed_at=to_db_time(now), attempts=messages.c.attempts + 1)
            .returning(
                messages.c.id,
                messages.c.channel,
                messages.c.phone,
                messages.c.short_number,
                messages.c.text,
                messages.c.reply_to,
                messages.c.attempts,
                messages.c.created_at,
            )
        )
        out = []
        for row in result:
            created = from_db_time(row.created_at)
            assert created is not None
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
                )
            )
        return sorted(out, key=lambda o: o.id)

    async def set_outbound_status(
        self,
        outbound_id: int,
        status: str,
        *,
        transport_id: str | None = None,
        error: str | None = None,
    ) -> None:
        values: dict[str, Any] = {"status": status, "error": error}
        if transport_id is not None:
            values["transport_id"] = transport_id
        await self.conn.execute(update(messages).where(messages.c.id == outbound_id).values(values))

    async def release_stale_outbound(self, older_than: datetime) -> int:
        """Claimed replies whose sender died before reporting: back to pending."""
        result = await self.conn.execute(
            update(messages)
            .where(
                messages.c.direction == "out",
                messages.c.status == "sending",
                or_(
                    messages.c.claimed_at.is_(None), messages.c.claimed_at < to_db_time(older_than)
                ),
            )
            .values(status="pending")
        )
        return int(result.rowcount or 0)

    async def record_delivery_status(
        self, transport_id: str, status: str, error: str | None
    ) -> bool:
        result = await self.conn.execute(
            update(messages)
            .where(messages.c.direction == "out", messages.c.transport_id == transport_id)
            .values(delivery_status=status, error=error)
        )
        return bool(result.rowcount)

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
            assert submitted is not None
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

    async def count_accounts(self) -> int:
        result = await self.conn.execute(select(func.count()).select_from(accounts))
        return int(result.scalar_one())
