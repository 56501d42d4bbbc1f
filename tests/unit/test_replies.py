"""Reply texts: the wording of key replies and that every outcome fits its segment budget."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sms_gateway.domain.model import Meter, Outcome, PreviousReading, ReadingStatus, Zone
from sms_gateway.domain.parsed import ParseFailure, ParseFailureReason
from sms_gateway.domain.replies import ReplyContext, compose_reply, segment_budget
from sms_gateway.domain.rules import Decision
from sms_gateway.domain.segments import segment_count

TWO_ZONE = Meter("1234567833", "12345678", zones=2, digits=5, id=1)


def test_confirmation_matches_the_issue_example():
    decision = Decision(
        Outcome.ACCEPTED,
        period="2026-11",
        values=(5450, 2130),
        consumption=(50, 30),
        status=ReadingStatus.ACCEPTED,
    )
    ctx = ReplyContext(Outcome.ACCEPTED, account="1234567833", meter=TWO_ZONE, decision=decision)
    assert compose_reply(ctx) == "Приняты показания ЛС 1234567833: Т1 5450 (+50), Т2 2130 (+30)."


def test_a_confirmation_too_long_for_one_segment_takes_a_shorter_variant():
    """Three long readings (UCS-2: 70 characters a segment): the wordiest variants do not
    fit, the first that does is sent; when none does, the shortest."""
    decision = Decision(
        Outcome.ACCEPTED,
        period="2026-11",
        values=(123456, 234567, 345678),
        consumption=(1234, 2345, 3456),
        status=ReadingStatus.ACCEPTED,
    )
    ctx = ReplyContext(Outcome.ACCEPTED, account="121000000000", decision=decision)
    assert (
        compose_reply(ctx) == "Приняты 121000000000: Т1 123456, Т2 234567, Т3 345678, расход 7035"
    )
    longer = Decision(
        Outcome.ACCEPTED_NEXT_PERIOD,
        period="2026-12",
        values=(12345678, 23456789, 34567890),
        consumption=(1234567, 2345678, 3456789),
        status=ReadingStatus.ACCEPTED,
    )
    ctx = ReplyContext(Outcome.ACCEPTED_NEXT_PERIOD, account="ABCDEFGHIJKL123456", decision=longer)
    assert (
        compose_reply(ctx) == "За декабрь ABCDEFGHIJKL123456: Т1 12345678, Т2 23456789, Т3 34567890"
    )


def test_english_confirmation():
    decision = Decision(Outcome.ACCEPTED, period="2026-11", values=(5450,), consumption=(50,))
    ctx = ReplyContext(Outcome.ACCEPTED, account="1234567833", decision=decision)
    assert compose_reply(ctx, "en") == "Reading accepted, account 1234567833: T1 5450 (+50)."


def test_zone_count_hint_uses_the_meters_zones():
    """For a two-zone meter the hint shows Т1 ... Т2 ..."""
    ctx = ReplyContext(Outcome.ZONE_COUNT, account="1234567833", meter=TWO_ZONE)
    assert compose_reply(ctx) == (
        "Счётчик ЛС 1234567833 двухтарифный, нужно два показания. "
        "Отправьте: 1234567833 Т1 ... Т2 ..."
    )


def test_next_period_names_the_month():
    decision = Decision(
        Outcome.ACCEPTED_NEXT_PERIOD, period="2026-12", values=(5450,), consumption=(50,)
    )
    ctx = ReplyContext(Outcome.ACCEPTED_NEXT_PERIOD, account="1234567833", decision=decision)
    assert compose_reply(ctx) == "Приняты в счёт за декабрь ЛС 1234567833: Т1 5450 (+50)."


ACCOUNTS = st.one_of(
    st.from_regex(r"\d{10,12}", fullmatch=True),
    st.from_regex(r"[A-Z]{2,4}\d{3,10}", fullmatch=True),
)


@st.composite
def contexts(draw: st.DrawFn) -> ReplyContext:
    outcome = draw(st.sampled_from(list(Outcome)))
    zones = draw(st.integers(1, 3))
    digits = draw(st.integers(4, 7))
    limit = 10**digits - 1
    values = tuple(draw(st.integers(0, limit)) for _ in range(zones))
    consumption = draw(st.one_of(st.none(), st.tuples(*[st.integers(0, limit)] * zones)))
    previous_values = tuple(draw(st.integers(0, limit)) for _ in range(zones))
    previous = PreviousReading(previous_values, date(2026, 10, 20))
    meters = tuple(
        Meter("X", draw(st.from_regex(r"[0-9A-Z\-]{4,32}", fullmatch=True)), zones, digits)
        for _ in range(draw(st.integers(1, 6)))
    )
    if outcome is Outcome.CONFIRM_NEEDED and consumption is None:
        consumption = values
    decision = Decision(
        outcome,
        period=draw(st.sampled_from(["2026-01", "2026-09", "2026-12"])),
        values=values,
        consumption=consumption,
        previous=previous,
        offending_zone=Zone(draw(st.integers(1, zones))),
        days=draw(st.integers(1, 400)),
    )
    return ReplyContext(
        outcome,
        account=draw(st.one_of(st.none(), ACCOUNTS))
        if outcome in (Outcome.UNKNOWN_ACCOUNT, Outcome.UNPARSED)
        else draw(ACCOUNTS),
        meter=meters[0],
        meters=meters if draw(st.booleans()) else meters[:1],
        decision=decision,
        failure=ParseFailure(
            draw(st.sampled_from(list(ParseFailureReason))), draw(st.text(max_size=40))
        ),
        meter_reference=draw(st.from_regex(r"\d{1,32}", fullmatch=True)),
        last_period="2026-10" if draw(st.booleans()) else None,
        last_values=values if draw(st.booleans()) else None,
    )


@settings(max_examples=300, deadline=None)
@given(ctx=contexts(), locale=st.sampled_from(["ru", "en"]))
def test_every_outcome_fits_its_segment_budget(ctx: ReplyContext, locale: str):
    """Confirmations fit one segment, errors two, whatever the account, values and meter."""
    text = compose_reply(ctx, locale)
    assert text.strip() == text and text
    assert segment_count(text) <= segment_budget(ctx.outcome), text


@pytest.mark.parametrize("outcome", list(Outcome))
def test_every_outcome_has_a_reply_in_both_locales(outcome: Outcome):
    decision = Decision(
        outcome,
        period="2026-11",
        values=(5450,),
        consumption=(50,),
        previous=PreviousReading((5500,), date(2026, 10, 20)),
        days=30,
    )
    ctx = ReplyContext(
        outcome, account="1234567833", meter=TWO_ZONE, meters=(TWO_ZONE,), decision=decision
    )
    ru, en = compose_reply(ctx, "ru"), compose_reply(ctx, "en")
    assert ru != en
    assert any("а" <= ch <= "я" for ch in ru.lower())
    assert segment_count(ru) <= segment_budget(outcome)
    assert segment_count(en) <= segment_budget(outcome)


def test_segment_count_gsm_and_ucs2():
    assert segment_count("a" * 160) == 1
    assert segment_count("a" * 161) == 2
    assert segment_count("€" * 81) == 2  # extension characters cost two septets
    assert segment_count("я" * 70) == 1
    assert segment_count("я" * 71) == 2
    assert segment_count("я" * 135) == 3
    assert segment_count("😀" * 35) == 1  # a surrogate pair is two UCS-2 units
    assert segment_count("😀" * 36) == 2


def test_segment_count_never_cuts_a_character_between_parts():
    """A surrogate pair or a GSM escape pair that would straddle two parts opens the
    next one, as the SMPP encoder sends it: 134 UCS-2 units can take three parts."""
    assert segment_count("я" * 67 + "😀" + "я" * 65) == 2
    assert segment_count("я" * 66 + "😀" + "я" * 66) == 3
    assert segment_count("a" * 153 + "€" + "a" * 151) == 2
    assert segment_count("a" * 152 + "€" + "a" * 152) == 3
    assert segment_count("a\ud800" * 40) == 2  # a lone surrogate counts, never raises
