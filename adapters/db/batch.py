"""Group commit: many inbound SMS handled in one transaction.

`BatchUnit` loads, in a handful of queries, everything the messages of one batch
can touch (their inbound rows, the accounts they name or their phones are linked
to, those meters' readings, rate-limit counts, opt-outs, pending confirmations),
answers the service's questions from memory, remembers what it decides (so the
fifth message of a batch sees the reading the second one booked) and writes it
all back with a few multi-row statements before the one commit.

Everything here is synchronous on a plain Connection: the whole batch runs in one
hand-over to the database thread (see SqlStore.run_transaction), and the service's
decisions in between touch only memory. A batch of one message runs exactly the
same code as a batch of 200.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, insert, or_, select, update
from sqlalchemy.sql.elements import BindParameter

from adapters.db.prepared import Prepared
from adapters.db.schema import (
    account_phones,
    accounts,
    messages,
    pending_confirmations,
    phone_preferences,
    readings,
)
from adapters.db.store import (
    _value_columns,
    booked_reading,
    from_db_time,
    load_accounts,
    to_db_time,
    upsert_for,
    upsert_into,
)
from sms_gateway.domain.model import (
    Account,
    BookedReading,
    InboundSms,
    Meter,
    PreviousReading,
)

# The batch's reads, built once: only their parameters change from batch to batch.
_IDS: BindParameter[Any] = bindparam("ids", expanding=True)
_PHONES: BindParameter[Any] = bindparam("phones", expanding=True)
# In id order, so two instances locking overlapping batches cannot deadlock.
_INBOUND_STATUS = (
    select(messages.c.id, messages.c.status, messages.c.outcome)
    .where(messages.c.id.in_(_IDS))
    .order_by(messages.c.id)
)
# Another instance may be handling a redelivery of the same message.
_INBOUND_STATUS_LOCKED = Prepared(_INBOUND_STATUS.with_for_update())
_INBOUND_STATUS_PLAIN = Prepared(_INBOUND_STATUS)
# The first reply to each: what a redelivered message is answered with.
_REPLIES_TO = Prepared(
    select(messages.c.id, messages.c.reply_to, messages.c.text).where(
        messages.c.reply_to.in_(_IDS), messages.c.reply_index == 0
    )
)
# One pass over the hour's traffic of these phones: inbound rows count toward the
# rate limit, rate_limited replies say the limit was already announced.
_RECENT_TRAFFIC = Prepared(
    select(
        messages.c.phone,
        messages.c.id,
        messages.c.direction,
        messages.c.outcome,
        messages.c.created_at,
    ).where(messages.c.phone.in_(_PHONES), messages.c.created_at >= bindparam("since"))
)
# A phone's closed accounts (an import with --prune) are not its accounts any more;
# they are loaded apart, to tell the subscriber the account is closed.
_PHONE_ACCOUNTS = Prepared(
    select(account_phones.c.phone, account_phones.c.account, accounts.c.closed_at)
    .join(accounts, accounts.c.account == account_phones.c.account)
    .where(account_phones.c.phone.in_(_PHONES))
    .order_by(account_phones.c.account)
)
# Of accounts the pipeline could not load, those billing had listed: closed, or with
# every meter closed. Asked only for a message naming an unknown account.
_LISTED_ACCOUNTS = Prepared(
    select(accounts.c.account).where(accounts.c.account.in_(bindparam("accounts", expanding=True)))
)
_PREFERENCES = Prepared(
    select(phone_preferences.c.phone, phone_preferences.c.opted_out).where(
        phone_preferences.c.phone.in_(_PHONES)
    )
)
_PENDING_CONFIRMATIONS = Prepared(
    select(pending_confirmations).where(
        pending_confirmations.c.phone.in_(_PHONES),
        pending_confirmations.c.created_at >= bindparam("since"),
    )
)
_READINGS_OF_METERS = Prepared(select(readings).where(readings.c.meter_id.in_(_IDS)))
# The batch's writes.
_FINISH_INBOUND = Prepared(update(messages).where(messages.c.id == bindparam("b_id")))
_INSERT_PENDING = Prepared(insert(pending_confirmations))
_INSERT_REPLY = Prepared(
    insert(messages).returning(messages.c.id, messages.c.reply_to, messages.c.reply_index)
)
_BOOKED_COLUMNS = ("t1", "t2", "t3", "status", "submitted_at", "channel", "phone", "inbound_id")


@cache
def _upsert_readings(dialect: str) -> Prepared:
    """A reading booked again in its period replaces the earlier one."""
    upsert = upsert_for(dialect, readings)
    return Prepared(
        upsert.on_conflict_do_update(
            index_elements=[readings.c.meter_id, readings.c.period],
            set_={name: upsert.excluded[name] for name in _BOOKED_COLUMNS},
        )
    )


@dataclass(slots=True)
class _Reply:
    inbound_id: int
    inbound: InboundSms
    text: str
    outcome: str
    account: str | None
    status: str
    created_at: datetime
    reply_index: int = 0
    id: int | None = None


@dataclass(slots=True)
class _Pending:
    phone: str
    meter_id: int
    values: tuple[int, ...]
    created_at: datetime


@dataclass(slots=True)
class BatchUnit:
    """One batch's view of the database, and the writes it will make."""

    conn: Connection
    inbound_status: dict[int, str] = field(default_factory=dict)
    inbound_outcome: dict[int, str | None] = field(default_factory=dict)
    existing_replies: dict[int, tuple[int, str]] = field(default_factory=dict)
    recent_inbound: dict[str, list[tuple[int, datetime]]] = field(default_factory=dict)
    rate_limited_replies: dict[str, list[datetime]] = field(default_factory=dict)
    accounts: dict[str, Account] = field(default_factory=dict)
    missing_accounts: set[str] = field(default_factory=set)
    # Of missing_accounts, those closed by billing (not mistyped).
    closed_accounts: set[str] = field(default_factory=set)
    phone_accounts: dict[str, list[str]] = field(default_factory=dict)
    closed_phone_accounts: dict[str, list[str]] = field(default_factory=dict)
    opted_out: dict[str, bool] = field(default_factory=dict)
    readings_by_meter: dict[int, dict[str, BookedReading]] = field(default_factory=dict)
    # Pending confirmations by (phone, meter id): stored ones, and this batch's new ones.
    pending: dict[tuple[str, int], list[_Pending]] = field(default_factory=dict)
    # writes
    finished: list[dict[str, Any]] = field(default_factory=list)
    replies: list[_Reply] = field(default_factory=list)
    booked: dict[tuple[int, str], BookedReading] = field(default_factory=dict)
    new_pending: dict[tuple[str, int], list[_Pending]] = field(default_factory=dict)
    cleared_pending: set[tuple[str, int]] = field(default_factory=set)
    preferences: dict[str, tuple[bool, datetime]] = field(default_factory=dict)
    bindings: dict[tuple[str, str], datetime] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        conn: Connection,
        *,
        inbound_ids: Sequence[int],
        phones: Iterable[str],
        inserted: frozenset[int] | set[int] = frozenset(),
        account_ids: Iterable[str],
        hour_ago: datetime,
        day_ago: datetime,
    ) -> BatchUnit:
        unit = cls(conn)
        phone_list = sorted(set(phones))
        ids = sorted(set(inbound_ids))

        # Rows this transaction inserted are "received" and locked by it already: only
        # the others (redeliveries, work stored earlier) are read, and locked.
        for inbound_id in inserted:
            unit.inbound_status[inbound_id] = "received"
            unit.inbound_outcome[inbound_id] = None
        stored = [i for i in ids if i not in inserted]
        status_query = (
            _INBOUND_STATUS_LOCKED if conn.dialect.name == "postgresql" else _INBOUND_STATUS_PLAIN
        )
        for row in status_query.rows(conn, {"ids": stored}) if stored else ():
            unit.inbound_status[row.id] = row.status
            unit.inbound_outcome[row.id] = row.outcome
        done = [i for i, status in unit.inbound_status.items() if status != "received"]
        if done:
            for reply in _REPLIES_TO.rows(conn, {"ids": done}):
                unit.existing_replies[reply.reply_to] = (reply.id, reply.text)

        for recent in _RECENT_TRAFFIC.rows(
            conn, {"phones": phone_list, "since": to_db_time(hour_ago)}
        ):
            created = from_db_time(recent.created_at)
            if recent.direction == "in":
                unit.recent_inbound.setdefault(recent.phone, []).append((recent.id, created))
            elif recent.outcome == "rate_limited":
                unit.rate_limited_replies.setdefault(recent.phone, []).append(created)

        for link in _PHONE_ACCOUNTS.rows(conn, {"phones": phone_list}):
            by_phone = unit.phone_accounts if link.closed_at is None else unit.closed_phone_accounts
            by_phone.setdefault(link.phone, []).append(link.account)
        for preference in _PREFERENCES.rows(conn, {"phones": phone_list}):
            unit.opted_out[preference.phone] = bool(preference.opted_out)
        for row in _PENDING_CONFIRMATIONS.rows(
            conn, {"phones": phone_list, "since": to_db_time(day_ago)}
        ):
            created = from_db_time(row.created_at)
            values = tuple(v for v in (row.t1, row.t2, row.t3) if v is not None)
            unit.pending.setdefault((row.phone, row.meter_id), []).append(
                _Pending(row.phone, row.meter_id, values, created)
            )

        wanted = set(account_ids)
        for linked in unit.phone_accounts.values():
            wanted.update(linked)
        unit._load_accounts(wanted)
        return unit

    def _load_accounts(self, wanted: Iterable[str]) -> None:
        todo = sorted(set(wanted) - self.accounts.keys() - self.missing_accounts)
        if not todo:
            return
        loaded = load_accounts(self.conn, todo)
        self.accounts.update(loaded)
        missing = set(todo) - loaded.keys()
        if missing:
            self.missing_accounts.update(missing)
            for row in _LISTED_ACCOUNTS.rows(self.conn, {"accounts": sorted(missing)}):
                self.closed_accounts.add(row.account)
        meters_by_id = {m.id: m for a in loaded.values() for m in a.meters if m.id is not None}
        if not meters_by_id:
            return
        for row in _READINGS_OF_METERS.rows(self.conn, {"ids": sorted(meters_by_id)}):
            meter = meters_by_id[row.meter_id]
            booked = booked_reading(meter, row)
            self.readings_by_meter.setdefault(row.meter_id, {})[row.period] = booked

    # -- the questions the service asks ------------------------------------------

    def claim_inbound(self, inbound_id: int) -> bool:
        return self.inbound_status.get(inbound_id) == "received"

    def reply_for(self, inbound_id: int) -> tuple[str | None, str | None, int | None]:
        for made in self.replies:
            # The same message twice in one batch: the first one's reply.
            if made.inbound_id == inbound_id:
                return made.outcome, made.text, None
        reply = self.existing_replies.get(inbound_id)
        return (
            self.inbound_outcome.get(inbound_id),
            reply[1] if reply else None,
            reply[0] if reply else None,
        )

    def count_inbound_since(self, phone: str, since: datetime, up_to_id: int) -> int:
        return sum(
            1
            for inbound_id, created in self.recent_inbound.get(phone, [])
            if created >= since and inbound_id <= up_to_id
        )

    def replied_with_since(self, phone: str, outcome: str, since: datetime) -> bool:
        if outcome != "rate_limited":
            raise ValueError("only rate_limited replies are tracked per batch")
        if any(t >= since for t in self.rate_limited_replies.get(phone, [])):
            return True
        return any(
            r.inbound.phone == phone and r.outcome == outcome and r.created_at >= since
            for r in self.replies
        )

    def load_accounts(self, account_ids: Iterable[str]) -> dict[str, Account]:
        wanted = list(account_ids)
        self._load_accounts(wanted)
        return {a: self.accounts[a] for a in wanted if a in self.accounts}

    def accounts_for_phone(self, phone: str) -> list[str]:
        linked = set(self.phone_accounts.get(phone, []))
        linked.update(account for account, bound in self.bindings if bound == phone)
        return sorted(linked)

    def is_closed(self, account: str) -> bool:
        """Billing closed this account, or every meter of it (not an unknown number)."""
        self._load_accounts([account])
        return account in self.closed_accounts

    def closed_account_for_phone(self, phone: str) -> str | None:
        """The one account this phone was linked to, when billing has closed it and the
        phone has no open one."""
        linked = self.accounts_for_phone(phone)
        if not linked:
            linked = self.closed_phone_accounts.get(phone, [])
        if len(linked) == 1 and self.is_closed(linked[0]):
            return linked[0]
        return None

    def is_opted_out(self, phone: str) -> bool:
        if phone in self.preferences:
            return self.preferences[phone][0]
        return self.opted_out.get(phone, False)

    def set_opted_out(self, phone: str, opted_out: bool, now: datetime) -> None:
        self.preferences[phone] = (opted_out, now)

    def bind_phone(self, account: str, phone: str, now: datetime) -> None:
        self.bindings[(account, phone)] = now
        if account in self.accounts:
            current = self.accounts[account]
            self.accounts[account] = Account(
                current.account, current.meters, current.phones | {phone}
            )

    def _readings(self, meter: Meter) -> dict[str, BookedReading]:
        assert meter.id is not None
        return self.readings_by_meter.setdefault(meter.id, {})

    def previous_reading(self, meter: Meter, before_period: str) -> PreviousReading | None:
        earlier = [r for period, r in self._readings(meter).items() if period < before_period]
        booked = None
        if earlier:
            latest = max(earlier, key=lambda r: r.period)
            booked = PreviousReading(latest.values, latest.submitted_at.date())
        billing = billing_reading(meter)
        this_period = self._readings(meter).get(before_period)
        if (
            billing is not None
            and this_period is not None
            and billing.read_on >= this_period.submitted_at.date()
        ):
            # Our own booking for this period, back from billing after the export: a
            # correction is compared with what came before it, not with itself.
            billing = None
        if booked is None:
            return billing
        # Billing is the source of truth: on the same date its reading wins; an older
        # one never overrides a newer booking.
        if billing is None or booked.read_on > billing.read_on:
            return booked
        return billing

    def latest_known(self, meter: Meter) -> tuple[BookedReading | None, PreviousReading | None]:
        """The meter's latest booking, and billing's reading when it is newer (or of
        the same date) than that booking: what LAST reports."""
        booked = self.latest_reading(meter)
        billing = billing_reading(meter)
        if billing is not None and (
            booked is None or billing.read_on >= booked.submitted_at.date()
        ):
            return booked, billing
        return booked, None

    def reading_in_period(self, meter: Meter, period: str) -> BookedReading | None:
        return self._readings(meter).get(period)

    def latest_reading(self, meter: Meter) -> BookedReading | None:
        booked = self._readings(meter)
        return booked[max(booked)] if booked else None

    def book_reading(self, reading: BookedReading) -> None:
        assert reading.meter.id is not None
        self._readings(reading.meter)[reading.period] = reading
        self.booked[(reading.meter.id, reading.period)] = reading

    def has_pending_confirmation(
        self, phone: str, meter: Meter, values: tuple[int, ...], since: datetime
    ) -> bool:
        assert meter.id is not None
        key = (phone, meter.id)
        stored = [] if key in self.cleared_pending else self.pending.get(key, [])
        return any(
            p.values == values and p.created_at >= since
            for p in (*stored, *self.new_pending.get(key, []))
        )

    def add_pending_confirmation(
        self, phone: str, meter: Meter, values: tuple[int, ...], now: datetime
    ) -> None:
        assert meter.id is not None
        self.new_pending.setdefault((phone, meter.id), []).append(
            _Pending(phone, meter.id, values, now)
        )

    def clear_pending_confirmations(self, phone: str, meter: Meter) -> None:
        assert meter.id is not None
        self.cleared_pending.add((phone, meter.id))
        self.new_pending.pop((phone, meter.id), None)

    def finish_inbound(
        self, inbound_id: int, outcome: str, account: str | None, now: datetime
    ) -> None:
        self.inbound_status[inbound_id] = "processed"
        self.inbound_outcome[inbound_id] = outcome
        self.finished.append(
            {
                "b_id": inbound_id,
                "status": "processed",
                "outcome": outcome,
                "account": account,
                "processed_at": to_db_time(now),
            }
        )

    def insert_reply(
        self,
        *,
        inbound_id: int,
        inbound: InboundSms,
        text: str,
        outcome: str,
        account: str | None,
        status: str,
        now: datetime,
        reply_index: int = 0,
    ) -> _Reply:
        reply = _Reply(inbound_id, inbound, text, outcome, account, status, now, reply_index)
        self.replies.append(reply)
        return reply

    # -- writing it all back ----------------------------------------------------

    def flush(self, instance: str | None = None) -> None:
        """Write what the batch decided; `instance` claims the replies stored "sending"."""
        conn = self.conn
        if self.booked:
            rows = [
                {
                    "meter_id": r.meter.id,
                    "period": r.period,
                    **_value_columns(r.values),
                    "status": str(r.status),
                    "submitted_at": to_db_time(r.submitted_at),
                    "channel": r.channel,
                    "phone": r.phone,
                    "inbound_id": r.inbound_id,
                }
                for r in self.booked.values()
            ]
            _upsert_readings(conn.dialect.name).many(conn, rows)
        if self.cleared_pending:
            conn.execute(
                delete(pending_confirmations).where(
                    or_(
                        *[
                            and_(
                                pending_confirmations.c.phone == phone,
                                pending_confirmations.c.meter_id == meter_id,
                            )
                            for phone, meter_id in sorted(self.cleared_pending)
                        ]
                    )
                )
            )
        if self.new_pending:
            _INSERT_PENDING.many(
                conn,
                [
                    {
                        "phone": p.phone,
                        "meter_id": p.meter_id,
                        "created_at": to_db_time(p.created_at),
                        **_value_columns(p.values),
                    }
                    for added in self.new_pending.values()
                    for p in added
                ],
            )
        for phone, (opted_out, when) in self.preferences.items():
            stmt = upsert_into(conn, phone_preferences).values(
                phone=phone, opted_out=opted_out, updated_at=to_db_time(when)
            )
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[phone_preferences.c.phone],
                    set_={"opted_out": opted_out, "updated_at": to_db_time(when)},
                )
            )
        if self.bindings:
            conn.execute(
                upsert_into(conn, account_phones).on_conflict_do_nothing(),
                [
                    {"account": a, "phone": p, "source": "reg", "created_at": to_db_time(t)}
                    for (a, p), t in self.bindings.items()
                ],
            )
        if self.finished:
            # executemany: the keys other than b_id become the SET clause.
            _FINISH_INBOUND.many(conn, self.finished)
        if self.replies:
            result = _INSERT_REPLY.each(
                conn,
                [
                    {
                        "direction": "out",
                        "channel": r.inbound.channel,
                        "phone": r.inbound.phone,
                        "short_number": r.inbound.short_number,
                        "text": r.text,
                        "outcome": r.outcome,
                        "account": r.account,
                        "created_at": to_db_time(r.created_at),
                        "reply_to": r.inbound_id,
                        "reply_index": r.reply_index,
                        "status": r.status,
                        # Stored already claimed when handed straight to a sender.
                        "claimed_at": (to_db_time(r.created_at) if r.status == "sending" else None),
                        "instance": instance if r.status == "sending" else None,
                        "link": r.inbound.link,
                        "link_group": r.inbound.link_group,
                        "attempts": 1 if r.status == "sending" else 0,
                        "parts": 1,
                        "incomplete": False,
                    }
                    for r in self.replies
                ],
            )
            ids = {(row.reply_to, row.reply_index): int(row.id) for row in result}
            for reply in self.replies:
                reply.id = ids[reply.inbound_id, reply.reply_index]


def billing_reading(meter: Meter) -> PreviousReading | None:
    """Billing's latest reading of the meter, as the accounts file gave it."""
    if meter.last_values is None or meter.last_read_on is None:
        return None
    return PreviousReading(meter.last_values, meter.last_read_on, from_billing=True)
