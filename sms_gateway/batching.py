"""One worker per queue, handing it whatever has queued up: the shape of group commit.

Used by the inbound pipeline (whole batches of SMS in one transaction) and by the
store's small writes. By default nobody waits for a timer: idle, a batch holds one
item; under load, everything that queued while the previous batch ran.

With `linger_s`, a batch that is not full waits for company until its oldest item
has waited that long, but only at a trickle: while items arrive less than
`linger_s` apart on average. At a steady 200 MO/s (one every 5 ms) a batch of one
costs a whole transaction (a commit, a handful of reads, two thread hand-overs);
waiting 20 ms shares it among about six (bench/soak.py, one sitting: 1.9-2.4 ms of
CPU per MO without, 1.15 at 20 ms). Under load the batch is full or the queue never
empties, so nobody waits; at one SMS a minute nobody waits either, since no company
is coming.

While a batch lingers at a trickle, the transports that feed it may stop reading
(`add_pauser`) once company has come after the linger's first quarter (the sign that
the linger pays, below): what arrives after that waits in their sockets and is read
in one go when the linger ends, just before the batch is taken. At 200 MO/s each
deliver_sm otherwise woke the event loop on its own, five times per batch, each
wake-up costing more CPU than reading the PDU. Only at a trickle (items more than
PAUSE_MIN_GAP_S apart): under load, a full batch must end the linger, which needs the
items read as they come.

Nor does a batch wait when its senders are waiting for it: an SMSC whose window is
full sends the next deliver_sm only once this batch is acknowledged, so lingering
would only slow it down (the delayed-ack trap of TCP's Nagle). A linger that no
company joined after its first quarter is taken as that sign (such senders come all
at once, just after the previous batch answered them): the next 2, 4, 8 ... up to
1024 batches do not linger (exponential back-off), and one that pays resets it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar

from sms_gateway.errors import TemporaryFailure


class ReadPauser(Protocol):
    """A transport that can stop reading while a batch lingers, and catch up."""

    def pause_reading(self) -> None:
        """Read nothing more until resume_reading (called while an item it delivered
        is being queued: what has arrived is being read)."""

    def resume_reading(self) -> None:
        """Read again, starting with everything that arrived while paused."""


class Queued(Protocol):
    @property
    def future(self) -> asyncio.Future[Any]: ...


ItemT = TypeVar("ItemT", bound=Queued)


class BatchQueue(Generic[ItemT]):
    """`run_batch(items)` settles each item's future, or raises.

    A TemporaryFailure fails every item of the batch; any other error runs the
    items again one by one, so one bad item cannot take the others down, and the
    bad one gets `single_failure(item, error)`.
    """

    # The mean gap between arrivals is weighted this much toward the newest one: a
    # burst after a quiet hour stops lingering within a few items.
    GAP_WEIGHT = 0.2
    # A gap longer than this counts as this (an idle night is not "very slow traffic").
    MAX_GAP_S = 1.0
    # The longest back-off, in batches, after lingers that no company joined.
    MAX_SKIP = 1024
    # Transports pause reading during a linger only while items come at least this far
    # apart on average (below 500 a second).
    PAUSE_MIN_GAP_S = 0.002

    def __init__(
        self,
        run_batch: Callable[[list[ItemT]], Awaitable[None]],
        single_failure: Callable[[ItemT, Exception], BaseException],
        *,
        max_batch: int,
        name: str,
        linger_s: float = 0.0,
    ) -> None:
        self._run_batch = run_batch
        self._single_failure = single_failure
        self.max_batch = max_batch
        self.name = name
        self.linger_s = linger_s
        self._items: deque[ItemT] = deque()
        # When each queued item arrived (time.monotonic), in the same order; 0 for one
        # requeued by a batch (it has waited once) or when nothing lingers.
        self._arrivals: deque[float] = deque()
        self._last_arrival: float | None = None
        self._gap_s = self.MAX_GAP_S
        # Back-off after lingers that nobody joined: batches left that do not linger,
        # and how many lonely lingers in a row.
        self._skip = 0
        self._lonely = 0
        # Settled when a lingering batch should stop waiting (full, or closing).
        self._company: asyncio.Future[None] | None = None
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self._pausers: list[ReadPauser] = []
        # While lingering: from when an arrival pauses the transports, and whether it did.
        self._pause_from: float | None = None
        self._paused = False
        # While paused transports catch up: their items arrived over the whole linger,
        # not in the instant they are read.
        self._catching_up = False

    def __len__(self) -> int:
        return len(self._items)

    def add_pauser(self, pauser: ReadPauser) -> None:
        """Let `pauser` stop reading while a batch lingers at a trickle."""
        self._pausers.append(pauser)

    async def put(self, item: ItemT) -> None:
        """Queue `item` and wait until its future is settled.

        A caller cancelled meanwhile cancels the item's future, not the item: it is
        still handled with its batch, and whoever settles futures skips a cancelled
        one. (No asyncio.shield: its extra future and callbacks cost more than the
        rest of put, three times per SMS.)"""
        self.enqueue(item)
        await item.future

    def enqueue(self, item: ItemT) -> None:
        """Queue `item` without waiting: its future is settled later."""
        if self._closed:
            raise TemporaryFailure(f"{self.name} is shutting down")
        now = 0.0
        if self.linger_s > 0:
            now = time.monotonic()
            # Items read while catching up are counted when it ends (_catch_up).
            if self._last_arrival is not None and not self._catching_up:
                gap = min(now - self._last_arrival, self.MAX_GAP_S)
                self._gap_s += self.GAP_WEIGHT * (gap - self._gap_s)
            self._last_arrival = now
        self._append(item, now)
        if self._pause_from is not None and now >= self._pause_from:
            # Company after the first quarter: the rest of the linger needs no wake-ups.
            self._pause_from = None
            self._paused = True
            for pauser in self._pausers:
                pauser.pause_reading()

    def requeue(self, item: ItemT) -> None:
        """Queue `item` without waiting for it. A batch uses it to queue the next step
        of an item it began (its future still unsettled, its caller still waiting), so it
        is taken even while closing: aclose finishes everything queued. It has waited
        for company once already: the batch it is in does not linger."""
        self._append(item, None)

    def _append(self, item: ItemT, arrived: float | None) -> None:
        """arrived: time.monotonic() when it came, None for an item requeued by a batch."""
        self._items.append(item)
        self._arrivals.append(0.0 if arrived is None else arrived)
        if self._company is not None and (arrived is None or len(self._items) >= self.max_batch):
            self._stop_lingering()
        if self._worker is None or self._worker.done():
            self._wakeup = asyncio.Event()
            self._worker = asyncio.get_running_loop().create_task(self._work(), name=self.name)
        assert self._wakeup is not None
        self._wakeup.set()

    async def aclose(self) -> None:
        """Finish what is queued, then stop; later items fail temporarily."""
        self._closed = True
        self._stop_lingering()
        if self._worker is not None and self._wakeup is not None:
            self._wakeup.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None

    async def _work(self) -> None:
        assert self._wakeup is not None
        while True:
            if not self._items:
                if self._closed:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self._should_linger():
                if self._skip > 0:  # backing off after lingers nobody joined
                    self._skip -= 1
                else:
                    await self._linger()
            size = min(self.max_batch, len(self._items))
            for _ in range(size):
                self._arrivals.popleft()
            await self._run([self._items.popleft() for _ in range(size)])

    def _should_linger(self) -> bool:
        return (
            self.linger_s > 0
            and not self._closed
            and len(self._items) < self.max_batch
            and self._gap_s < self.linger_s
            and time.monotonic() - min(self._arrivals) < self.linger_s
        )

    async def _linger(self) -> None:
        """Wait until the oldest item has waited linger_s, the batch is full, or aclose."""
        loop = asyncio.get_running_loop()
        self._company = loop.create_future()
        deadline = min(self._arrivals) + self.linger_s
        timer = loop.call_later(max(0.0, deadline - time.monotonic()), self._stop_lingering)
        began, alone = time.monotonic(), len(self._items)
        if self._pausers and self._gap_s > self.PAUSE_MIN_GAP_S:
            self._pause_from = began + max(0.0, deadline - began) / 4
        try:
            await self._company
        finally:
            timer.cancel()
            self._company = None
            self._pause_from = None
            if self._paused:
                self._paused = False
                self._catch_up()
        if self._company_kept_coming(began, alone):
            self._lonely = 0
        else:
            # Capped where the back-off is: a gateway busy for months counts no further.
            self._lonely = min(self._lonely + 1, self.MAX_SKIP.bit_length())
            self._skip = min(2**self._lonely, self.MAX_SKIP)

    def _catch_up(self) -> None:
        """Resume the paused transports; what they read came over the whole linger, so
        the mean gap takes it as evenly spread since the last arrival before."""
        before, last = len(self._items), self._last_arrival
        self._catching_up = True
        try:
            for pauser in self._pausers:
                pauser.resume_reading()
        finally:
            self._catching_up = False
        came = len(self._items) - before
        if came > 0 and last is not None:
            # enqueue stamped _last_arrival as they came in; `came` arrivals spread over
            # the time since `last`, weighted as if taken one by one.
            gap = min((time.monotonic() - last) / came, self.MAX_GAP_S)
            self._gap_s = gap + (self._gap_s - gap) * (1 - self.GAP_WEIGHT) ** came

    def _company_kept_coming(self, began: float, alone: int) -> bool:
        """Whether the linger paid: the batch filled, or company still came after its
        first quarter. Senders waiting for this batch (full windows) all come at once,
        right after the previous batch answered them, then nothing until this one does."""
        if len(self._items) >= self.max_batch:
            return True
        if len(self._items) <= alone or self._last_arrival is None:
            return False
        return self._last_arrival > began + (time.monotonic() - began) / 4

    def _stop_lingering(self) -> None:
        if self._company is not None and not self._company.done():
            self._company.set_result(None)

    async def _run(self, batch: list[ItemT]) -> None:
        try:
            await self._run_batch(batch)
        except TemporaryFailure as exc:
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
        except Exception as exc:
            if len(batch) > 1:
                for item in batch:
                    await self._run([item])
                return
            if not batch[0].future.done():
                batch[0].future.set_exception(self._single_failure(batch[0], exc))
