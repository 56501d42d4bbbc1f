"""The event loop's stall gauge: the longest stall of the last window, and no older."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from sms_gateway import runner
from sms_gateway.metrics import GatewayMetrics


def _gauge(metrics: GatewayMetrics) -> float:
    value = metrics.registry.get_sample_value("sms_gateway_event_loop_lag_max_seconds")
    assert value is not None
    return value


async def test_the_gauge_holds_the_window_s_longest_stall_then_lets_it_go(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runner, "LAG_TICK_S", 0.01)
    monkeypatch.setattr(runner, "LAG_WINDOW_S", 1.0)
    metrics = GatewayMetrics()
    probe = asyncio.create_task(runner._loop_lag_probe(metrics))
    try:
        await asyncio.sleep(0.05)
        time.sleep(0.3)  # a stall of the whole loop: the probe's timer runs late
        long_seen = time.monotonic()
        await asyncio.sleep(0.03)
        assert _gauge(metrics) >= 0.25
        await asyncio.sleep(0.4)
        time.sleep(0.15)  # a shorter one does not replace the longest
        short_seen = time.monotonic()
        await asyncio.sleep(0.03)
        assert _gauge(metrics) >= 0.25
        # The long stall out of the window, the short one not yet (about 0.6 s later).
        await asyncio.sleep(long_seen + 1.2 - time.monotonic())
        assert 0.12 <= _gauge(metrics) < 0.25
        await asyncio.sleep(short_seen + 1.2 - time.monotonic())
        # Both out of the window (what a loaded machine adds stays well under 0.12 s).
        assert _gauge(metrics) < 0.12
    finally:
        probe.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await probe
