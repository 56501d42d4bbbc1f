"""BatchQueue: whatever queued up is handled together, and a cancelled caller's item too."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

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


def _recording_queue(
    linger_s: float, max_batch: int = 100
) -> tuple[BatchQueue[Item], list[list[str]], dict[str, float]]:
    """A queue whose batches are recorded, and when each item was handled."""
    batches: list[list[str]] = []
    handled_at: dict[str, float] = {}

    async def run_batch(batch: list[Item]) -> None:
        batches.append([item.name for item in batch])
        for item in batch:
            handled_at[item.name] = asyncio.get_running_loop().time()
            item.future.set_result(None)

    queue: BatchQueue[Item] = BatchQueue(
        run_batch, _failure, max_batch=max_batch, name="test", linger_s=linger_s
    )
    return queue, batches, handled_at


async def _trickle(queue: BatchQueue[Item], count: int, every_s: float) -> dict[str, float]:
    """Queue `count` items on a schedule `every_s` apart; when each was queued."""
    loop = asyncio.get_running_loop()
    queued_at: dict[str, float] = {}
    waiting = []
    due = loop.time()
    for number in range(count):
        await asyncio.sleep(max(0.0, due - loop.time()))
        item = Item(f"i{number}")
        queued_at[item.name] = loop.time()
        queue.enqueue(item)
        waiting.append(item.future)
        due += every_s
    await asyncio.gather(*waiting)
    return queued_at


async def test_at_a_trickle_batches_wait_for_company_but_no_item_waits_much_longer_than_linger():
    linger_s, every_s = 0.06, 0.01
    queue, batches, handled_at = _recording_queue(linger_s)
    queued_at = await _trickle(queue, 60, every_s)
    await queue.aclose()
    # Once the mean gap is known to be short (the first dozen items), items share batches.
    late = [batch for batch in batches if int(batch[0][1:]) >= 20]
    assert late and min(len(batch) for batch in late[:-1]) >= 3, batches
    waits = [handled_at[name] - queued_at[name] for name in queued_at]
    # Bounded by the oldest item's deadline, not by a sleep after each batch; the slack
    # is for a loaded test machine.
    assert max(waits) < linger_s + 0.05, max(waits)


@pytest.mark.parametrize(
    ("linger_s", "count", "every_s", "at_most_s"),
    [
        # Gaps longer than the linger: no company is coming, none waits 0.25 s.
        (0.25, 6, 0.4, 0.15),
        # No linger: a batch per item however close they come.
        (0.0, 20, 0.01, 0.05),
    ],
)
async def test_nobody_waits_without_a_linger_or_at_a_slow_trickle(
    linger_s: float, count: int, every_s: float, at_most_s: float
) -> None:
    queue, batches, handled_at = _recording_queue(linger_s)
    queued_at = await _trickle(queue, count, every_s)
    await queue.aclose()
    assert batches == [[f"i{n}"] for n in range(count)]
    assert max(handled_at[name] - queued_at[name] for name in queued_at) < at_most_s


async def test_a_full_batch_or_shutting_down_ends_the_wait_at_once():
    queue, batches, _ = _recording_queue(linger_s=30.0, max_batch=3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    # Three at once fill a batch: it goes without waiting for the 30 s linger.
    await asyncio.gather(*(queue.put(Item(f"full{n}")) for n in range(3)))
    assert batches == [["full0", "full1", "full2"]]
    # Two of three wait for company; aclose sends them on at once.
    waiting = [Item("a"), Item("b")]
    for item in waiting:
        queue.enqueue(item)
    await asyncio.sleep(0.05)
    assert len(batches) == 1  # still lingering
    await queue.aclose()
    assert batches[1] == ["a", "b"] and all(item.future.done() for item in waiting)
    assert loop.time() - started < 5


async def test_the_next_step_a_batch_requeues_does_not_wait_for_company_again():
    """A received MO acknowledged apart is processed in the next batch: it waited once."""
    loop = asyncio.get_running_loop()
    handled_at: dict[str, float] = {}
    batches: list[list[str]] = []
    next_steps: list[Item] = []

    async def run_batch(batch: list[Item]) -> None:
        batches.append([item.name for item in batch])
        for item in batch:
            handled_at[item.name] = loop.time()
            if not item.name.endswith("+"):
                next_steps.append(Item(item.name + "+"))
                queue.requeue(next_steps[-1])
            item.future.set_result(None)

    queue: BatchQueue[Item] = BatchQueue(
        run_batch, _failure, max_batch=100, name="test", linger_s=0.2
    )
    await _trickle(queue, 40, every_s=0.02)
    await asyncio.gather(*(step.future for step in next_steps))
    await queue.aclose()
    # The trickle's first steps waited for company (once the mean gap was known) ...
    assert max(len([n for n in batch if not n.endswith("+")]) for batch in batches) >= 4
    # ... their next steps went at once, in the batch right after.
    assert max(handled_at[f"i{n}+"] - handled_at[f"i{n}"] for n in range(40)) < 0.1


class _Transport:
    """A transport that can pause reading: while paused, what it is sent waits (as in
    a socket) and is queued when reading resumes."""

    def __init__(self, queue: BatchQueue[Item]) -> None:
        self.queue = queue
        self.paused = False
        self.pauses = 0
        self.waiting: list[Item] = []
        self.read_late: set[str] = set()

    def pause_reading(self) -> None:
        assert not self.paused
        self.paused = True
        self.pauses += 1

    def resume_reading(self) -> None:
        self.paused = False
        waiting, self.waiting = self.waiting, []
        for item in waiting:
            self.queue.enqueue(item)

    def deliver(self, item: Item) -> None:
        if self.paused:
            self.waiting.append(item)
            self.read_late.add(item.name)
        else:
            self.queue.enqueue(item)

    async def send(self, item: Item) -> None:
        self.deliver(item)
        await item.future


@pytest.mark.parametrize("pausing", [False, True], ids=["reading", "pausing transport"])
async def test_senders_that_wait_for_their_batch_are_not_slowed_by_the_linger(pausing: bool):
    """An SMSC with a full window sends the next MO only once the last is acknowledged:
    a linger nobody joins is not repeated (back-off), so a window of one or two runs
    at the pipeline's pace, not one batch per linger. Through a transport that may
    pause too: the second sender's MO joins each linger before its first quarter, so
    the transport never pauses there and the back-off still sees no company later."""
    queue, batches, _ = _recording_queue(linger_s=0.05)
    loop = asyncio.get_running_loop()
    send = queue.put
    if pausing:
        transport = _Transport(queue)
        queue.add_pauser(transport)
        send = transport.send

    async def window_of_one(sender: str, count: int, round_trip_s: float) -> None:
        for number in range(count):
            await asyncio.sleep(round_trip_s)
            await send(Item(f"{sender}{number}"))

    started = loop.time()
    # Two binds, each with a window of one; the second one's MO comes a moment later
    # than the first's (another socket), so it joins each linger, early: no company
    # comes after it, and lingering on would only delay both.
    await asyncio.gather(window_of_one("a", 100, 0), window_of_one("b", 100, 0.001))
    elapsed = loop.time() - started
    await queue.aclose()
    assert sum(len(batch) for batch in batches) == 200
    # Lingering every batch: 100 rounds x 50 ms = 5 s. Backing off: a handful of lingers.
    assert elapsed < 1.0, (elapsed, len(batches))


async def test_at_a_trickle_the_transport_stops_reading_for_the_rest_of_a_linger_that_pays():
    linger_s, every_s = 0.04, 0.005
    queue, batches, handled_at = _recording_queue(linger_s)
    transport = _Transport(queue)
    queue.add_pauser(transport)
    loop = asyncio.get_running_loop()
    sent_at: dict[str, float] = {}
    due = loop.time()
    items = []
    for number in range(150):
        await asyncio.sleep(max(0.0, due - loop.time()))
        item = Item(f"i{number}")
        sent_at[item.name] = loop.time()
        transport.deliver(item)
        items.append(item)
        due += every_s
    await asyncio.gather(*(item.future for item in items))
    await queue.aclose()
    handled = [name for batch in batches for name in batch]
    assert sorted(handled) == sorted(sent_at)  # each once
    assert not transport.paused and not transport.waiting
    # Paused in many lingers, to the end: the items read late count as arrivals spread
    # over the linger, not as a burst (which would stop the pausing). Half of them on a
    # quiet machine; a loaded one delays some arrivals into bursts, which are rightly
    # read as they come (a CI run, the rest of the suite beside: 8 pauses in 29).
    late_batches = [b for b in batches if int(b[0][1:]) >= 100]
    assert transport.pauses >= len(batches) // 4, (transport.pauses, len(batches))
    assert any(name in transport.read_late for b in late_batches for name in b)
    assert min(len(b) for b in late_batches[:-1]) >= 4, batches
    # Still bounded by the oldest item's deadline (slack for a loaded machine).
    waits = [handled_at[name] - sent_at[name] for name in sent_at]
    assert max(waits) < linger_s + 0.05, max(waits)


async def test_under_load_the_transport_keeps_reading():
    """Items closer than PAUSE_MIN_GAP_S on average: a full batch must end the linger."""
    queue, batches, _ = _recording_queue(linger_s=0.05)
    transport = _Transport(queue)
    queue.add_pauser(transport)
    items = []
    settled = 0  # pauses while the mean gap came down from its idle value
    for number in range(40):
        if number == 10:
            settled = transport.pauses
        # Ten at once every 5 ms: half a millisecond apart on average.
        for k in range(10):
            item = Item(f"i{number}-{k}")
            transport.deliver(item)
            items.append(item)
        await asyncio.sleep(0.005)
    await asyncio.gather(*(item.future for item in items))
    await queue.aclose()
    assert sum(len(batch) for batch in batches) == 400
    assert transport.pauses == settled
