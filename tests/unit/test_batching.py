"""BatchQueue: whatever queued up is handled together, and a cancelled caller's item too."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from sms_gateway.batching import BatchQueue


@dataclass(eq=False)
class Item:
    name: str
    future: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def _failure(_item: Item, error: Exception) -> Exception:
    return error


async def test_a_cancelled_callers_item_is_still_handled_with_its_batch() -> None:
    handled: list[list[str]] = []
    release = asyncio.Event()

    async def run_batch(batch: list[Item]) -> None:
        await release.wait()
        handled.append([item.name for item in batch])
        for item in batch:
            if not item.future.done():
                item.future.set_result(item.name.upper())

    queue: BatchQueue[Item] = BatchQueue(run_batch, _failure, max_batch=10, name="test")
    first = asyncio.create_task(queue.put(Item("first")))
    await asyncio.sleep(0)  # the worker takes "first" alone and waits in run_batch
    items = [Item(name) for name in ("a", "b", "c")]
    waiters = [asyncio.create_task(queue.put(item)) for item in items]
    await asyncio.sleep(0)
    waiters[1].cancel()
    release.set()
    await asyncio.gather(first, waiters[0], waiters[2])
    assert handled == [["first"], ["a", "b", "c"]]  # "b" was handled, not dropped
    assert items[0].future.result() == "A" and items[2].future.result() == "C"
    assert items[1].future.cancelled()
    await queue.aclose()


async def test_a_failing_batch_is_retried_one_by_one_and_only_the_bad_item_fails() -> None:
    async def run_batch(batch: list[Item]) -> None:
        if any(item.name == "bad" for item in batch):
            raise ValueError("bad item")
        for item in batch:
            item.future.set_result(item.name)

    queue: BatchQueue[Item] = BatchQueue(run_batch, _failure, max_batch=10, name="test")
    items = [Item(name) for name in ("a", "bad", "c")]
    results = await asyncio.gather(*(queue.put(item) for item in items), return_exceptions=True)
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], ValueError)
    assert items[0].future.result() == "a" and items[2].future.result() == "c"
    await queue.aclose()
