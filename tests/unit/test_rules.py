"""The pure rules: billing periods, zone assignment, rollover, outcomes."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from sms_gateway.config import RulesSettings
from sms_gateway.domain.model import (
    BookedReading,
    Meter,
    Outcome,
    PreviousReading,
    ReadingStatus,
    Zone,
)
from sms_gateway.domain.rules import (
    PeriodChoice,
    assign_zones,
    choose_period,
    consumption_of,
    evaluate_reading,
    match_meter,
    previous_period,
)

RULES = RulesSettings()
ONE_ZONE = Meter("1234567833", "00112233", zones=1, digits=5, id=1)
TWO_ZONE = Meter("5550001112", "12345678", zones=2, digits=5, id=2)
THREE_ZONE = Meter("7770003334", "77001234", zones=3, digits=6, id=3)
PREVIOUS = PreviousReading((1000,), date(2026, 10, 20))


def evaluate(meter=ONE_ZONE, values=(1050,), today=date(2026, 11, 18), rules=RULES, **kwargs):
    kwargs.setdefault("previous", PREVIOUS)
    kwargs.setdefault("booked_in_period", None)
    kwargs.setdefault("confirms_pending", False)
    return evaluate_reading(meter=meter, values=values, today=today, policy=rules, **kwargs)


@pytest.mark.parametrize(
    ("today", "outside", "expected"),
    [
        (date(2026, 11, 15), "next_period", PeriodChoice("2026-11", False)),
        (date(2026, 11, 25), "next_period", PeriodChoice("2026-11", False)),
        (date(2026, 11, 5), "next_period", PeriodChoice("2026-11", False)),
        (date(2026, 11, 5), "reject", PeriodChoice("2026-11", False)),
        (date(2026, 11, 26), "next_period", PeriodChoice("2026-12", True)),
        (date(2026, 12, 31), "next_period", PeriodChoice("2027-01", True)),
        (date(2026, 11, 26), "reject", PeriodChoice(None, False)),
    ],
)
def test_choose_period(today, outside, expected):
    """Inside and before the window: this month; after it: next month or nothing."""
    rules = RulesSettings(outside_window=outside)
    assert expected == choose_period(today, rules)


def test_previous_period_wraps_the_year():
    assert previous_period("2026-01") == "2025-12"
    assert previous_period("2026-11") == "2026-10"


@pytest.mark.parametrize(
    ("meter", "positional", "labelled", "expected"),
    [
        (ONE_ZONE, (5450,), {}, (5450,)),
        (TWO_ZONE, (5450, 2130), {}, (5450, 2130)),
        (TWO_ZONE, (), {Zone.T2: 2130, Zone.T1: 5450}, (5450, 2130)),
        (THREE_ZONE, (), {Zone.T1: 900, Zone.T3: 1550, Zone.T2: 640}, (900, 640, 1550)),
        (TWO_ZONE, (5450,), {}, None),
        (ONE_ZONE, (5450, 2130), {}, None),
        (TWO_ZONE, (), {Zone.T1: 5450}, None),
        (ONE_ZONE, (), {Zone.T2: 5450}, None),
        (TWO_ZONE, (5450,), {Zone.T2: 2130}, None),
    ],
)
def test_assign_zones(meter, positional, labelled, expected):
    """Positional values fill T1.. in order, labels name zones; counts must match the meter."""
    assert expected == assign_zones(meter, positional, labelled)


def test_rollover_counts_through_the_register_limit():
    """99990 -> 00012 on a 5-digit register is 22 kWh, not a lower reading."""
    previous = PreviousReading((99990,), date(2026, 10, 20))
    assert consumption_of(ONE_ZONE, (12,), previous) == ((22,), None)


def test_small_decrease_is_not_a_rollover():
    previous = PreviousReading((5000,), date(2026, 10, 20))
    assert consumption_of(ONE_ZONE, (4990,), previous) == (None, Zone.T1)


def test_accepted_with_consumption():
    decision = evaluate(values=(1050,))
    assert (
        decision.outcome,
        decision.period,
        decision.consumption,
        decision.status,
    ) == (Outcome.ACCEPTED, "2026-11", (50,), ReadingStatus.ACCEPTED)


def test_accepted_without_previous_reading_has_no_consumption():
    decision = evaluate(previous=None)
    assert (decision.outcome, decision.consumption) == (Outcome.ACCEPTED, None)


def test_after_window_books_next_period():
    decision = evaluate(today=date(2026, 11, 27))
    assert (decision.outcome, decision.period) == (Outcome.ACCEPTED_NEXT_PERIOD, "2026-12")


def test_after_window_rejected_when_configured():
    decision = evaluate(today=date(2026, 11, 27), rules=RulesSettings(outside_window="reject"))
    assert (decision.outcome, decision.status) == (Outcome.OUTSIDE_WINDOW, None)


def test_too_many_digits_names_the_zone():
    decision = evaluate(meter=TWO_ZONE, values=(5450, 213000), previous=None)
    assert (decision.outcome, decision.offending_zone) == (Outcome.TOO_MANY_DIGITS, Zone.T2)


def test_lower_than_previous_names_the_zone():
    previous = PreviousReading((5400, 2100), date(2026, 10, 20))
    decision = evaluate(meter=TWO_ZONE, values=(5450, 2050), previous=previous)
    assert (
        decision.outcome,
        decision.offending_zone,
        decision.books,
    ) == (Outcome.LOWER_THAN_PREVIOUS, Zone.T2, False)


def test_unusual_consumption_needs_confirmation():
    """29 days at 150 kWh/day allow 4350 kWh; 5000 needs a confirmation."""
    decision = evaluate(values=(6000,))
    assert (
        decision.outcome,
        decision.consumption,
        decision.days,
        decision.books,
    ) == (Outcome.CONFIRM_NEEDED, (5000,), 29, False)


def test_consumption_at_the_limit_is_accepted():
    """Exactly max_daily_kwh per day is still usual."""
    decision = evaluate(values=(1000 + 150 * 29,))
    assert decision.outcome == Outcome.ACCEPTED


def test_same_day_counts_as_one_day():
    previous = PreviousReading((1000,), date(2026, 11, 18))
    assert evaluate(values=(1151,), previous=previous).outcome == Outcome.CONFIRM_NEEDED
    assert evaluate(values=(1150,), previous=previous).outcome == Outcome.ACCEPTED


def test_confirmation_books_as_confirmed():
    decision = evaluate(values=(6000,), confirms_pending=True)
    assert (decision.outcome, decision.status) == (Outcome.CONFIRMED, ReadingStatus.CONFIRMED)


def test_pending_confirmation_does_not_mark_a_usual_reading():
    decision = evaluate(values=(1050,), confirms_pending=True)
    assert (decision.outcome, decision.status) == (Outcome.ACCEPTED, ReadingStatus.ACCEPTED)


def _booked(values):
    return BookedReading(
        ONE_ZONE,
        "2026-11",
        values,
        ReadingStatus.ACCEPTED,
        datetime(2026, 11, 16, tzinfo=UTC),
        "cli",
    )


def test_same_reading_again_is_duplicate():
    decision = evaluate(values=(1050,), booked_in_period=_booked((1050,)))
    assert (decision.outcome, decision.books) == (Outcome.DUPLICATE, False)


def test_different_reading_in_same_period_corrects():
    decision = evaluate(values=(1060,), booked_in_period=_booked((1050,)))
    assert (
        decision.outcome,
        decision.consumption,
        decision.books,
    ) == (Outcome.CORRECTED, (60,), True)


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("12345678", TWO_ZONE),
        ("5678", TWO_ZONE),
        ("1234", THREE_ZONE),
        ("678", None),
        ("9999", None),
    ],
)
def test_match_meter_by_serial_or_suffix(reference, expected):
    assert expected == match_meter((ONE_ZONE, TWO_ZONE, THREE_ZONE), reference)


def test_ambiguous_suffix_matches_nothing():
    twin = Meter("5550001112", "99995678", zones=1, digits=5, id=9)
    assert None is match_meter((TWO_ZONE, twin), "5678")
