"""Which acknowledged MO the SMSC is known to have heard acknowledged.

An SMSC redelivers a deliver_sm it got no ESME_ROK for. Ours may be lost when the link
dies just after we wrote it, or when the process dies between storing the MO and
writing it. The SMSC's redelivery then carries the same text, and SMPP gives no id to
tell it from the subscriber sending the same text again (docs/operators.md).

So each link keeps a ledger of the MO it acknowledged in this session, in the order
the acknowledgements were written. TCP delivers in order and the SMSC reads in order,
so an answer to any request written after an acknowledgement (a submit_sm_resp, an
enquire_link_resp, an unbind_resp) proves the SMSC read that acknowledgement: such MO
are confirmed and leave the ledger. What is still in it when the session ends is in
doubt, and the pipeline treats the next same-text copy as its redelivery.
"""

from __future__ import annotations

import time
from collections import deque


class AckLedger:
    """The acknowledgements of one link's current session not yet known to be read."""

    def __init__(self) -> None:
        self.session = 0
        # (position, inbound id, new, when): position counts acknowledgements written
        # in this session; `new` is False for the repeated ack of a redelivery.
        self._written: deque[tuple[int, int, bool, float]] = deque()
        self._position = 0
        self._max_confirmed_new = 0

    def begin(self, session: int) -> list[int]:
        """A new session; the previous one's unconfirmed MO come back (in doubt)."""
        doubtful = self.unconfirmed()
        self.session = session
        self._written.clear()
        return doubtful

    def acknowledged(self, inbound_id: int, new: bool) -> None:
        """ESME_ROK for this MO was queued on the link, after everything before it."""
        self._position += 1
        self._written.append((self._position, inbound_id, new, time.monotonic()))

    def mark(self) -> int:
        """Taken when a request is queued: its answer proves every acknowledgement up
        to this mark was read."""
        return self._position

    def confirm(self, mark: int) -> None:
        written = self._written
        while written and written[0][0] <= mark:
            _, inbound_id, new, _ = written.popleft()
            if new and inbound_id > self._max_confirmed_new:
                self._max_confirmed_new = inbound_id

    def confirm_all(self) -> None:
        self.confirm(self._position)

    def unconfirmed(self) -> list[int]:
        return [inbound_id for _, inbound_id, _, _ in self._written]

    def waiting_since(self) -> float | None:
        """When the oldest unconfirmed acknowledgement was written (monotonic)."""
        return self._written[0][3] if self._written else None

    def lowest_unconfirmed_new(self) -> int | None:
        """The smallest id among the new MO still unconfirmed."""
        return min((i for _, i, new, _ in self._written if new), default=None)

    @property
    def max_confirmed_new(self) -> int:
        return self._max_confirmed_new
