"""Instances of `serve` on one database: who is alive, and what a dead one leaves.

Each instance has a name (stable across restarts: `[gateway] instance_name`, or the
host and HTTP port) and a row in `instances` with a heartbeat. What an instance leaves
when it dies is taken over at once when it starts again under its name, or by any live
instance once its heartbeat is older than `instance_dead_after_s`:

- replies it had claimed and not recorded sent go back to the outbox (at least once:
  a submit_sm written just before the crash may go out again);
- MO it stored after the last one it knew acknowledged to its SMSC come into doubt,
  so that the SMSC's redelivery of one of them is recognised (adapters/smpp/acks.py).

`claim_timeout_s` stays the outer bound, for claims no instance row accounts for.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection

from adapters.db.schema import instances, messages
from adapters.db.store import SqlStore, to_db_time, upsert_for
from sms_gateway.config import Settings

log = structlog.get_logger("adapters.db.instances")


def instance_name(settings: Settings) -> str:
    """The configured name, else host:port (two instances on one host listen on two
    ports, and a restarted one listens on the same port again)."""
    return settings.gateway.instance_name or f"{socket.gethostname()}:{settings.http.port}"


@dataclass(frozen=True, slots=True)
class TakenOver:
    """What was taken over from an instance that died (or from our previous run)."""

    name: str
    replies_released: int
    mo_in_doubt: int


def _take_over(
    conn: Connection, name: str, confirmed_id: int | None, doubt_since: datetime
) -> TakenOver:
    released = conn.execute(
        update(messages)
        .where(
            messages.c.direction == "out",
            messages.c.status == "sending",
            messages.c.instance == name,
        )
        .values(status="pending")
    ).rowcount
    # Whole MO only: a long MO's parts were each acknowledged (and are redelivered as
    # parts, not as the joined text).
    doubtful = conn.execute(
        update(messages)
        .where(
            messages.c.direction == "in",
            messages.c.channel == "smpp",
            messages.c.instance == name,
            messages.c.parts == 1,
            messages.c.ack.is_(None),
            messages.c.id > (confirmed_id or 0),
            messages.c.created_at >= to_db_time(doubt_since),
        )
        .values(ack="doubt")
    ).rowcount
    return TakenOver(name, int(released or 0), int(doubtful or 0))


class InstanceRegistry:
    """This instance's row: registered at start, beating while it runs, retired at
    the end; each beat also takes over from instances whose heartbeat stopped."""

    def __init__(
        self,
        store: SqlStore,
        name: str,
        *,
        dead_after: timedelta,
        redelivery_window: timedelta,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.name = name
        self.run_id = uuid.uuid4().hex
        self.dead_after = dead_after
        self.redelivery_window = redelivery_window
        self.clock = clock
        # False once another process registered under our name.
        self.holds_name = True

    @property
    def beat_interval_s(self) -> float:
        """Often enough that a live instance never looks dead, whatever the load."""
        return min(2.0, self.dead_after.total_seconds() / 4)

    async def start(self) -> TakenOver:
        """Register; what our previous run left (it died, or it is us again after a
        restart) is taken over now, before any bind."""
        now = self.clock()

        def register(conn: Connection) -> TakenOver:
            previous = conn.execute(
                select(instances.c.mo_confirmed_id, instances.c.released_at).where(
                    instances.c.name == self.name
                )
            ).first()
            if previous is not None and previous.released_at is None:
                taken = _take_over(
                    conn, self.name, previous.mo_confirmed_id, now - self.redelivery_window
                )
            else:
                # Stopped cleanly, or never ran: its doubts were recorded then. Claims
                # with our name are released all the same (a crash mid-stop).
                taken = _take_over(conn, self.name, None, now)
            newest = conn.execute(select(func.max(messages.c.id))).scalar()
            row = {
                "name": self.name,
                "run_id": self.run_id,
                "host": socket.gethostname()[:128],
                "pid": os.getpid(),
                "started_at": to_db_time(now),
                "heartbeat_at": to_db_time(now),
                # Everything stored before this run is accounted for above.
                "mo_confirmed_id": newest,
                "released_at": None,
            }
            insert = upsert_for(conn.dialect.name, instances).values(**row)
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=[instances.c.name],
                    set_={k: v for k, v in row.items() if k != "name"},
                )
            )
            return taken

        taken = await self.store.run_transaction(register)
        if taken.replies_released or taken.mo_in_doubt:
            log.info(
                "instance.took_over_own",
                instance=self.name,
                replies_released=taken.replies_released,
                mo_in_doubt=taken.mo_in_doubt,
            )
        return taken

    async def beat(self, confirmed_id: int | None = None) -> list[TakenOver]:
        """Heartbeat (with the MO confirmed so far), and take over from the dead."""
        now = self.clock()
        dead_before = to_db_time(now - self.dead_after)

        def work(conn: Connection) -> tuple[bool, list[TakenOver]]:
            values: dict[str, object] = {"heartbeat_at": to_db_time(now)}
            if confirmed_id is not None:
                values["mo_confirmed_id"] = confirmed_id
            ours = conn.execute(
                update(instances)
                .where(instances.c.name == self.name, instances.c.run_id == self.run_id)
                .values(**values)
            ).rowcount
            dead = conn.execute(
                select(instances.c.name, instances.c.mo_confirmed_id).where(
                    instances.c.heartbeat_at < dead_before,
                    instances.c.released_at.is_(None),
                    instances.c.name != self.name,
                )
            ).all()
            taken: list[TakenOver] = []
            doubt_since = now - self.redelivery_window
            for row in dead:
                # Only if it is still dead and nobody took over meanwhile (PostgreSQL:
                # another live instance may be doing the same right now).
                mine = conn.execute(
                    update(instances)
                    .where(
                        instances.c.name == row.name,
                        instances.c.heartbeat_at < dead_before,
                        instances.c.released_at.is_(None),
                    )
                    .values(released_at=to_db_time(now))
                ).rowcount
                if mine:
                    taken.append(_take_over(conn, row.name, row.mo_confirmed_id, doubt_since))
            return bool(ours), taken

        ours, taken = await self.store.run_transaction(work)
        if not ours and self.holds_name:
            log.error(
                "instance.name_taken",
                instance=self.name,
                hint="another serve registered under this name: give each its own "
                "[gateway] instance_name",
            )
        self.holds_name = ours
        for one in taken:
            log.warning(
                "instance.took_over_dead",
                instance=self.name,
                dead=one.name,
                replies_released=one.replies_released,
                mo_in_doubt=one.mo_in_doubt,
            )
        return taken

    async def retire(self, confirmed_id: int | None = None) -> TakenOver:
        """A clean stop: our claims go back (none should be left), MO not known
        acknowledged come into doubt, and nobody needs to take over from us."""
        now = self.clock()

        def work(conn: Connection) -> TakenOver:
            current = conn.execute(
                select(instances.c.mo_confirmed_id).where(
                    instances.c.name == self.name, instances.c.run_id == self.run_id
                )
            ).first()
            if current is None:
                return TakenOver(self.name, 0, 0)  # another process holds the name now
            confirmed = confirmed_id if confirmed_id is not None else current.mo_confirmed_id
            taken = _take_over(conn, self.name, confirmed, now - self.redelivery_window)
            conn.execute(
                update(instances)
                .where(instances.c.name == self.name, instances.c.run_id == self.run_id)
                .values(released_at=to_db_time(now), heartbeat_at=to_db_time(now))
            )
            return taken

        return await self.store.run_transaction(work)
