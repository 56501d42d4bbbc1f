"""Pure rules: which billing period a reading goes to and whether it can be booked.

Plain functions over plain data; the service loads what they need (the meter, its
previous reading, the reading already booked for the period) and stores what they
decide.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Protocol, TypeVar

from sms_gateway.domain.model import (
    BookedReading,
    Meter,
    Outcome,
    PreviousReading,
    ReadingStatus,
    Zone,
)

_Value = TypeVar("_Value", int, str)


class ReadingPolicy(Protocol):
    """The [rules] settings the domain needs (satisfied by config.RulesSettings)."""

    @property
    def window_start_day(self) -> int: ...
    @property
    def window_end_day(self) -> int: ...
    @property
    def outside_window(self) -> str: ...
    @property
    def max_daily_kwh(self) -> int: ...


@dataclass(frozen=True, slots=True)
class PeriodChoice:
    period: str | None  # None: rejected as outside the window
    next_period: bool


@dataclass(frozen=True, slots=True)
class Decision:
    """What the rules decided about one submitted reading."""

    outcome: Outcome
    period: str | None = None
    values: tuple[int, ...] = ()
    consumption: tuple[int, ...] | None = None  # per zone, None without a previous reading
    status: ReadingStatus | None = None  # set when the reading is to be booked
    previous: PreviousReading | None = None
    offending_zone: Zone | None = None
    days: int | None = None  # days since the previous reading

    @property
    def books(self) -> bool:
        return self.status is not None


def format_period(year: int, month: int) -> str:
    return f"{year:04d}-{month:02d}"


def next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def previous_period(period: str) -> str:
    year, month = int(period[:4]), int(period[5:7])
    return format_period(year - 1, 12) if month == 1 else format_period(year, month - 1)


def choose_period(today: date, policy: ReadingPolicy) -> PeriodChoice:
    """The billing period a reading sent on `today` (local date) belongs to.

    Inside the window and before it opens: the current month, whose window is
    open or still ahead. After it closes: the next month, or nothing under
    outside_window = "reject".
    """
    if today.day <= policy.window_end_day:
        return PeriodChoice(format_period(today.year, today.month), next_period=False)
    if policy.outside_window == "reject":
        return PeriodChoice(None, next_period=False)
    year, month = next_month(today.year, today.month)
    return PeriodChoice(format_period(year, month), next_period=True)


def assign_zones(
    meter: Meter, positional: tuple[_Value, ...], labelled: Mapping[Zone, _Value]
) -> tuple[_Value, ...] | None:
    """The reading as one value per zone of the meter, or None when the count is wrong.

    Positional values fill T1, T2, T3 in order; labelled ones name their zone.
    """
    if positional and labelled:
        return None
    if labelled:
        if set(labelled) != {Zone(z) for z in range(1, meter.zones + 1)}:
            return None
        return tuple(labelled[Zone(z)] for z in range(1, meter.zones + 1))
    if len(positional) != meter.zones:
        return None
    return positional


def consumption_of(
    meter: Meter, values: tuple[int, ...], previous: PreviousReading
) -> tuple[tuple[int, ...] | None, Zone | None]:
    """Consumption per zone since `previous`, or (None, zone) when a zone went down.

    A lower value is a register rollover (99999 -> 00012) when it went down by more
    than half the register's range; anything less is a mistake.
    """
    limit = meter.register_limit
    consumption: list[int] = []
    for index, (new, old) in enumerate(zip(values, previous.values, strict=True)):
        if new >= old:
            consumption.append(new - old)
        elif old - new > limit // 2:
            consumption.append(new + limit - old)
        else:
            return None, Zone(index + 1)
    return tuple(consumption), None


def evaluate_reading(
    *,
    meter: Meter,
    values: tuple[int, ...],
    today: date,
    policy: ReadingPolicy,
    previous: PreviousReading | None,
    booked_in_period: BookedReading | None,
    confirms_pending: bool,
    period: PeriodChoice | None = None,
) -> Decision:
    """Decide what happens to a reading of `meter` sent on local date `today`.

    previous: the latest reading before the target period (booked or imported).
    booked_in_period: what is already booked for the target period, if anything.
    confirms_pending: the same phone sent exactly these values for this meter
        within 24 h and was asked to confirm them.
    """
    for index, value in enumerate(values):
        if value >= meter.register_limit:
            return Decision(Outcome.TOO_MANY_DIGITS, values=values, offending_zone=Zone(index + 1))

    choice = period or choose_period(today, policy)
    if choice.period is None:
        return Decision(Outcome.OUTSIDE_WINDOW, values=values)

    if booked_in_period is not None and booked_in_period.values == values:
        return Decision(
            Outcome.DUPLICATE,
            period=choice.period,
            values=values,
            previous=previous,
            consumption=consumption_of(meter, values, previous)[0] if previous else None,
        )

    consumption: tuple[int, ...] | None = None
    days: int | None = None
    unusual = False
    if previous is not None:
        consumption, lower_zone = consumption_of(meter, values, previous)
        if consumption is None:
            return Decision(
                Outcome.LOWER_THAN_PREVIOUS,
                period=choice.period,
                values=values,
                previous=previous,
                offending_zone=lower_zone,
            )
        days = max(1, (today - previous.read_on).days)
        unusual = sum(consumption) / days > policy.max_daily_kwh
        if unusual and not confirms_pending:
            return Decision(
                Outcome.CONFIRM_NEEDED,
                period=choice.period,
                values=values,
                consumption=consumption,
                previous=previous,
                days=days,
            )

    # Only an unusual reading needs (and gets) a confirmation.
    confirmed = unusual
    if confirmed:
        outcome = Outcome.CONFIRMED
    elif booked_in_period is not None:
        outcome = Outcome.CORRECTED
    elif choice.next_period:
        outcome = Outcome.ACCEPTED_NEXT_PERIOD
    else:
        outcome = Outcome.ACCEPTED
    return Decision(
        outcome,
        period=choice.period,
        values=values,
        consumption=consumption,
        status=ReadingStatus.CONFIRMED if confirmed else ReadingStatus.ACCEPTED,
        previous=previous,
        days=days,
    )


def match_meter(meters: tuple[Meter, ...], reference: str) -> Meter | None:
    """The meter whose serial is `reference` or ends with it (4 digits or more)."""
    exact = [m for m in meters if m.serial == reference]
    if exact:
        return exact[0]
    if len(reference) < 4:
        return None
    suffix = [m for m in meters if m.serial.endswith(reference)]
    return suffix[0] if len(suffix) == 1 else None


def without_red_digits(
    meter: Meter,
    typed: tuple[str, ...],
    previous: PreviousReading | None,
    today: date,
    policy: ReadingPolicy,
) -> tuple[tuple[int, ...], bool] | None:
    """The reading as numbers, and whether red digits (tenths after the register's
    digits) were dropped; None when a value has too many digits to be read safely.

    A value with more digits than the register, counting the leading zeros typed,
    is never read as a larger number than the register shows ("054321" on five
    digits is not 54321). Its leading register digits are the reading when that is
    plausible against the previous one: not lower, and under max_daily_kwh a day.
    """
    if all(len(value) <= meter.digits for value in typed):
        return tuple(int(value) for value in typed), False
    if previous is None:
        return None
    days = max(1, (today - previous.read_on).days)
    values: list[int] = []
    for value, old in zip(typed, previous.values, strict=True):
        if len(value) <= meter.digits:
            values.append(int(value))
            continue
        cut = int(value[: meter.digits])
        if cut < old or (cut - old) / days > policy.max_daily_kwh:
            return None
        values.append(cut)
    return tuple(values), True
