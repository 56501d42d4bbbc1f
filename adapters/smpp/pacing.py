"""Pacing a link's submit_sm: its window (submit_sm without a response) and its rate."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque


class Pacer:
    """Keeps submit_sm to at most `rate` per second, in bursts of `burst` (reservations,
    so concurrent senders queue behind each other).

    Evenly spaced, a batch of six replies at 5,000/s went out as six sends 0.2 ms apart,
    each with a timer of its own and a submit_sm_resp that woke the event loop on its
    own: 4 % of serve's CPU at a steady 200 MO/s (bench/soak.py, two runs side by side).
    So `burst` submit_sm may go back to back, and the next burst waits until `burst /
    rate` seconds after the last one began. With `burst` a divisor of a whole `rate`,
    any second holds at most `rate` submit_sm, as an SMSC counts them, whether it counts
    per clock second or over a sliding one (a second is `rate / burst` whole spans of
    `burst / rate` seconds, each holding at most one burst); see `default_burst`.
    """

    def __init__(self, rate: float, burst: int | None = None) -> None:
        self.burst = default_burst(rate) if burst is None else max(1, burst)
        self.span = self.burst / rate
        # Reserved start times of the last `burst` submit_sm, oldest first; never
        # decreasing, so the oldest bounds the next one.
        self._started: deque[float] = deque(maxlen=self.burst)

    def reserve(self, now: float | None = None) -> float:
        """The monotonic time of the next free slot, now taken."""
        if now is None:
            now = time.monotonic()
        at = now
        if len(self._started) == self.burst:
            # A nanosecond on top: sums of float spans must not let an eleventh burst
            # slip into a second by a rounding error.
            at = max(now, self._started[0] + self.span + 1e-9)
        self._started.append(at)
        return at

    async def acquire(self) -> None:
        delay = self.reserve() - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


def default_burst(rate: float) -> int:
    """The largest divisor of a whole `rate` not above a tenth of it: 10 at 100/s, 500
    at 5,000/s, 5 at 75/s; 1 (evenly spaced) for a rate under 20/s, a prime one or one
    with a fraction. At most a tenth of a second's worth back to back, and never more
    than `rate` in any second (see Pacer)."""
    whole = int(rate)
    if whole != rate or whole < 20:
        return 1
    limit = whole // 10
    best = 1
    for small in range(1, math.isqrt(whole) + 1):  # divisors come in pairs
        if whole % small == 0:
            for divisor in (small, whole // small):
                if best < divisor <= limit:
                    best = divisor
    return best


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
