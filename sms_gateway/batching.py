"""One worker per queue, handing it whatever has queued up: the shape of group commit.

Used by the inbound pipeline (whole batches of SMS in one transaction) and by the
store's small writes. By default nobody waits for a timer: idle, a batch holds one
item; under load, everything that queued while the previous batch ran. With
`linger_s`, a batch that is not full waits that long for company first: at a steady
trickle (200 MO/s, one every 5 ms) batches of one cost a transaction each, and a few
milliseconds of waiting share it (bench/soak.py measures both).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar

from sms_gateway.errors import TemporaryFailure


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

    # For queues built without linger_s (a bench sets it to compare).
    default_linger_s = 0.0

    def __init__(
        self,
        run_batch: Callable[[list[ItemT]], Awaitable[None]],
        single_failure: Callable[[ItemT, Exception], BaseException],
        *,
        max_batch: int,
        name: str,
        linger_s: float | None = None,
    ) -> None:
        self._run_batch = run_batch
        self._single_failure = single_failure
        self.max_batch = max_batch
        self.name = name
        self.linger_s = self.default_linger_s if linger_s is None else linger_s
        self._items: deque[ItemT] = deque()
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

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
        self.requeue(item)

    def requeue(self, item: ItemT) -> None:
        """Queue `item` without waiting for it. A batch uses it to queue the next step
        of an item it began (its future still unsettled, its caller still waiting), so it
        is taken even while closing: aclose finishes everything queued."""
        self._items.append(item)
        if self._worker is None or self._worker.done():
            self._wakeup = asyncio.Event()
            self._worker = asyncio.get_running_loop().create_task(self._work(), name=self.name)
        assert self._wakeup is not None
        self._wakeup.set()

    async def aclose(self) -> None:
        """Finish what is queued, then stop; later items fail temporarily."""
        self._closed = True
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
            if self.linger_s > 0 and len(self._items) < self.max_batch and not self._closed:
                await asyncio.sleep(self.linger_s)
            size = min(self.max_batch, len(self._items))
            await self._run([self._items.popleft() for _ in range(size)])

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
