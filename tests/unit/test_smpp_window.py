"""The submit window: taken at once or awaited, and never a slot lost to a cancellation."""

from __future__ import annotations

import asyncio

from adapters.smpp.pacing import Window as _Window


async def test_slots_are_taken_at_once_until_none_is_free() -> None:
    window = _Window(2)
    assert window.try_take() and window.try_take()
    assert not window.try_take()
    window.give()
    assert window.try_take()


async def test_a_waiter_gets_the_slot_given_back_before_anyone_else() -> None:
    window = _Window(1)
    await window.take()
    waiting = asyncio.create_task(window.take())
    await asyncio.sleep(0)
    assert not waiting.done()
    window.give()
    # The slot went to the waiter, not back to the pool for a newcomer.
    assert not window.try_take()
    await waiting
    window.give()
    assert window.try_take()


async def test_a_cancelled_waiter_leaves_no_slot_lost_or_doubled() -> None:
    window = _Window(1)
    await window.take()
    first = asyncio.create_task(window.take())
    second = asyncio.create_task(window.take())
    await asyncio.sleep(0)
    first.cancel()
    window.give()  # the cancelled one is skipped: the second gets it
    await asyncio.sleep(0)
    assert first.cancelled()
    await second
    window.give()
    assert window.try_take()
    assert not window.try_take()


async def test_a_waiter_cancelled_just_after_being_given_a_slot_passes_it_on() -> None:
    window = _Window(1)
    await window.take()
    first = asyncio.create_task(window.take())
    second = asyncio.create_task(window.take())
    await asyncio.sleep(0)
    window.give()  # handed to the first...
    first.cancel()  # ...which is cancelled before it runs
    await asyncio.sleep(0)
    await second  # the slot went on to the second
    assert first.cancelled()
    assert not window.try_take()
    window.give()
    assert window.try_take()
