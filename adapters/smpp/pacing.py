"""Pacing a link's submit_sm: its window (submit_sm without a response) and its rate."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque


class Pacer:
    """Spaces submit_sm at most `rate` per second (reservations, so concurrent senders
    queue behind each other instead of bursting)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next_at = 0.0

    def reserve(self) -> float:
        """The monotonic time of the next free slot, now taken."""
        now = time.monotonic()
        at = max(self.next_at, now)
        self.next_at = at + self.interval
        return at

    async def acquire(self) -> None:
        delay = self.reserve() - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


class Window:
    """At most `size` submit_sm without their submit_sm_resp. Unlike asyncio.Semaphore
    it can be taken without awaiting, by the quick path (`Outbound.offer`)."""

    def __init__(self, size: int) -> None:
        self.free = size
        self._waiters: deque[asyncio.Future[None]] = deque()

    def try_take(self) -> bool:
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return True
        return False

    async def take(self) -> None:
        if self.try_take():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # give() hands its slot straight to us
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give()  # handed a slot as we were cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):  # give() may have dropped it
                    self._waiters.remove(waiter)
            raise

    def give(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.free += 1
