"""Concatenated MO: collect the parts of one message, in any order, and join them.

How parts are acknowledged (the durability decision):

A part is acknowledged ESME_ROK as soon as it is held by a `PartStore`, before the
whole message exists. Holding the deliver_sm_resp of part 1 until part N arrives
would deadlock SMSCs that deliver with a window of one, and they would redeliver
part 1 forever. So the store is what makes an acknowledged part safe:

- `MemoryPartStore` (the default, for tests and benches) keeps parts in process
  memory. A crash between the first part's ack and the last part's arrival loses
  that message.
- `adapters.db.parts.SqlPartStore` (what `serve` uses; same Protocol) makes it sound:
  `save` commits before the part is acked, `load` brings pending parts back after a
  restart, and `discard` runs once the joined message is accepted by the pipeline.

A message whose parts do not all arrive within `reassembly_timeout_s` of its first
part is handed on with what did arrive, joined in order and marked incomplete.
Parts of a message that was already handed on (a late SMSC redelivery) are
acknowledged and dropped for `reassembly_timeout_s` more, so they do not become a
second, one-part message.

Several instances, one database (the SMSC may spread the parts of one message over
the binds of different instances): the store is also where they meet. After storing
a part, and again before handing on an incomplete message, the adapter reads the
group back (`load_group`: every instance's parts) and merges it into its
`Reassembler`, the stored copy of each part winning. Whichever instance sees the set
complete hands it on; an empty group means another instance handed it on (the
store remembers that for its handed-on TTL). Two instances handing on the same group
at once is harmless: the joined message's identity is computed from stored values
only, so the pipeline recognises the second as a redelivery.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class MessagePart:
    """One received part of a concatenated message, with what is needed to join it."""

    group_key: str
    source_addr: str
    destination_addr: str
    phone: str
    reference: int
    total: int
    sequence: int
    data_coding: int
    body: bytes
    received_at: datetime
    external_id: str | None = None


class PartStore(Protocol):
    async def save(self, part: MessagePart) -> None:
        """Hold the part durably; raise TemporaryFailure when that is impossible."""
        ...

    async def discard(self, group_key: str) -> None:
        """Forget every part of a message once the joined message is accepted."""
        ...

    async def load(self) -> list[MessagePart]:
        """Every part still held (after a restart)."""
        ...

    async def load_group(self, group_key: str) -> list[MessagePart]:
        """The parts of one message held now, by any instance sharing the store, in
        sequence order; empty once the message was handed on and discarded (for the
        store's handed-on TTL, after which the key may start a new message)."""
        ...


class MemoryPartStore:
    """Parts in process memory: lost on a crash (see the module docstring)."""

    durable = False

    def __init__(self, handed_on_ttl_s: float = 60.0) -> None:
        self._parts: dict[str, dict[int, MessagePart]] = {}
        # Like the table's marker rows: group key -> when it was handed on.
        self._handed_on: dict[str, float] = {}
        self.handed_on_ttl_s = handed_on_ttl_s

    def _recently_handed_on(self, group_key: str) -> bool:
        at = self._handed_on.get(group_key)
        return at is not None and time.monotonic() - at < self.handed_on_ttl_s

    async def save(self, part: MessagePart) -> None:
        if part.group_key in self._handed_on and not self._recently_handed_on(part.group_key):
            del self._handed_on[part.group_key]  # a new message under an old key
            self._parts.pop(part.group_key, None)
        self._parts.setdefault(part.group_key, {})[part.sequence] = part

    async def discard(self, group_key: str) -> None:
        self._parts.pop(group_key, None)
        # Hand-ons past their TTL are forgotten here, as the table drops stale markers.
        for key in [k for k in self._handed_on if not self._recently_handed_on(k)]:
            del self._handed_on[key]
            self._parts.pop(key, None)
        self._handed_on[group_key] = time.monotonic()

    async def load(self) -> list[MessagePart]:
        return [
            part
            for key, parts in self._parts.items()
            if key not in self._handed_on
            for part in parts.values()
        ]

    async def load_group(self, group_key: str) -> list[MessagePart]:
        if self._recently_handed_on(group_key):
            return []
        parts = self._parts.get(group_key, {})
        return [parts[number] for number in sorted(parts)]


@dataclass(slots=True)
class PartGroup:
    """The parts of one message seen so far."""

    key: str
    total: int
    first_seen: float  # time.monotonic()
    parts: dict[int, MessagePart] = field(default_factory=dict)
    handing_on: bool = False  # the joined message is being accepted right now
    # The link the latest part came on (adapters.smpp.links.Link): the joined message's
    # reply goes back there. None for parts loaded from the database at start-up.
    link: Any = None

    @property
    def complete(self) -> bool:
        return len(self.parts) == self.total

    def ordered(self) -> list[MessagePart]:
        return [self.parts[number] for number in sorted(self.parts)]


class Reassembler:
    """Groups parts by message; the adapter decides when a group is handed on."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._groups: dict[str, PartGroup] = {}
        self._finished: dict[str, float] = {}  # group key -> monotonic time handed on

    def __len__(self) -> int:
        return len(self._groups)

    def recently_finished(self, key: str) -> bool:
        finished_at = self._finished.get(key)
        return finished_at is not None and time.monotonic() - finished_at < self.timeout_s

    def add(self, part: MessagePart, now: float | None = None) -> PartGroup:
        now = time.monotonic() if now is None else now
        group = self._groups.get(part.group_key)
        if group is None:
            group = PartGroup(part.group_key, part.total, now)
            self._groups[part.group_key] = group
        group.parts.setdefault(part.sequence, part)
        return group

    def merge(self, group: PartGroup, stored: list[MessagePart]) -> None:
        """Take the group's parts as stored (other instances' included). The stored copy
        wins over the one in memory: a redelivered part was stored the first time it
        came, and the joined message's identity must be the same on every instance."""
        for part in stored:
            if part.group_key == group.key:
                group.parts[part.sequence] = part

    def retry_soon(self, group: PartGroup, delay_s: float = 1.0) -> None:
        """Make the group expire in about `delay_s`: its hand-on failed, try again."""
        group.handing_on = False
        group.first_seen = time.monotonic() - self.timeout_s + delay_s

    def expired(self, now: float | None = None) -> list[PartGroup]:
        now = time.monotonic() if now is None else now
        for key, finished_at in list(self._finished.items()):
            if now - finished_at >= self.timeout_s:
                del self._finished[key]
        return [
            group
            for group in self._groups.values()
            if not group.handing_on and now - group.first_seen >= self.timeout_s
        ]

    def finish(self, key: str) -> None:
        self._groups.pop(key, None)
        self._finished[key] = time.monotonic()
