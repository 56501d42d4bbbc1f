"""The submit_sm pacer: at most max_send_rate in any second, in bursts of a tenth of it."""

from __future__ import annotations

import bisect
import math

from hypothesis import given
from hypothesis import strategies as st

from adapters.smpp.pacing import Pacer, default_burst


def most_in_any(times: list[float], length: float) -> int:
    """The most reservations in any half-open window [t, t + length): one starting at a
    reservation holds at least as many as any other."""
    return max(bisect.bisect_left(times, t + length) - i for i, t in enumerate(times))


def reserve_all(pacer: Pacer, arrivals: list[float]) -> list[float]:
    return [pacer.reserve(now=at) for at in arrivals]


rates = st.one_of(
    st.integers(1, 20_000).map(float),
    st.sampled_from([20.0, 50.0, 75.0, 100.0, 150.0, 1000.0, 5000.0]),
    st.floats(0.5, 500.0, allow_nan=False),
)
# Requests arriving in bunches (a batch's replies) and gaps, over a few seconds.
arrivals = st.lists(
    st.tuples(st.floats(0.0, 0.5), st.integers(1, 60)), min_size=1, max_size=40
).map(lambda steps: [t for t, n in _bunches(steps) for _ in range(n)])


def _bunches(steps: list[tuple[float, int]]) -> list[tuple[float, int]]:
    at, out = 0.0, []
    for gap, count in steps:
        at += gap
        out.append((at, count))
    return out


@given(rates, arrivals)
def test_no_second_holds_more_than_the_rate_and_no_span_more_than_a_burst(
    rate: float, wanted: list[float]
) -> None:
    pacer = Pacer(rate)
    times = reserve_all(pacer, wanted)
    assert all(t >= w for t, w in zip(times, wanted, strict=True))
    assert times == sorted(times)
    assert most_in_any(times, 1.0) <= math.ceil(rate)
    assert most_in_any(times, pacer.span) <= pacer.burst


@given(rates, st.integers(1, 3000))
def test_bursts_are_never_slower_than_even_spacing(rate: float, count: int) -> None:
    """Everything due at once: the n-th submit_sm goes no later than n / rate."""
    times = reserve_all(Pacer(rate), [0.0] * count)
    # (each span a nanosecond longer: see Pacer.reserve)
    assert all(t <= n / rate + (n + 1) * 2e-9 for n, t in enumerate(times))


def test_replies_of_a_batch_go_back_to_back_at_the_usual_rates() -> None:
    """Six replies due at once at 100/s (the default) and at 5,000/s: one send, no timer."""
    for rate in (100.0, 5000.0):
        assert [0.0] * 6 == reserve_all(Pacer(rate), [0.0] * 6)


def test_a_burst_of_one_spaces_them_evenly() -> None:
    times = reserve_all(Pacer(10.0, burst=1), [0.0] * 4)
    assert [0.0, 0.1, 0.2, 0.3] == [round(t, 6) for t in times]
    # 10/s is under 20/s: a burst of one by default.
    assert times == reserve_all(Pacer(10.0), [0.0] * 4)


def test_the_next_burst_waits_a_span_after_the_last_began() -> None:
    pacer = Pacer(100.0)  # bursts of 10, a span of 0.1 s
    first = reserve_all(pacer, [0.0] * 10)
    assert [0.0] * 10 == first
    assert 0.1 == round(pacer.reserve(now=0.05), 6)
    # Idle for a while: a whole burst is free again at once.
    assert [5.0] * 10 == reserve_all(pacer, [5.0] * 10)


def test_the_default_burst_divides_the_rate_and_is_at_most_a_tenth_of_it() -> None:
    assert 10 == default_burst(100.0)
    assert 500 == default_burst(5000.0)
    assert 5 == default_burst(75.0)
    assert 1 == default_burst(97.0)  # prime
    assert 1 == default_burst(19.0)
    assert 1 == default_burst(150.5)  # not whole
    for rate in range(1, 3000):
        burst = default_burst(float(rate))
        assert rate % burst == 0
        assert burst == 1 or burst <= rate / 10
