"""Metamorphic properties of the grammar: noise never changes what is read, a garbled
digit is never read, and every number read is a number of the text.

What the service books is a function of the parsed message and the database, so a
noisy text that parses to the same readings (account, meter, numbers, labels, total)
as the clean one books the same; `_word_between_readings` is the one rule of the
service that looks at the words between numbers, and it must not fire either.
tests/integration/test_real_shaped.py runs such texts through the whole gateway.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from grammar import MessageParser
from grammar.parser import normalise
from sms_gateway.domain.parsed import ParsedReadings, ParseFailure, SeveralReadings
from sms_gateway.service import GatewayService
from tests.unit.grammar_cases import ACCOUNT_PATTERN

_parser = MessageParser(ACCOUNT_PATTERN)
_parser.compile()

_account = st.from_regex(r"[1-9][0-9]{9}", fullmatch=True)
_reading = st.from_regex(r"[1-9][0-9]{1,4}", fullmatch=True)

# Valid messages: (template, how many readings). {a} is the account, {r0}.. the readings.
_TEMPLATES = [
    ("{a} {r0}", 1),
    ("{a} {r0} {r1}", 2),
    ("{a} {r0} {r1} {r2}", 3),
    ("ЛС {a} {r0}", 1),
    ("лицевой счет {a} показания {r0}", 1),
    ("ЛС {a} Т1 {r0} Т2 {r1}", 2),
    ("{a} день {r0} ночь {r1}", 2),
    ("{a} Д{r0} Н{r1}", 2),
    ("{a} пик {r0} ночь {r1} полупик {r2}", 3),
    ("Т1 {r0} Т2 {r1} ЛС {a}", 2),
    ("{a}\n{r0}\n{r1}", 2),
]

# Noise a subscriber adds; none of it is a reading, a label or an account.
_NOISE = [
    "Здравствуйте!",
    "Добрый день,",
    "Доброе утро",
    "спасибо",
    "Спасибо большое!",
    "Хорошего дня",
    "пожалуйста",
    "Иванов",
    "Петрова Анна",
    "Иванова Н.П.",
    "👍",
    "😊🙏",
    "тел. 8-916-123-45-67",
    "тел. +7 (916) 123-45-67",
    "+7 916 123-45-67",
    "за октябрь 2026 г.",
    "на 25.11.2026",
    "от 01.12.2026",
    "показания",
    "передаю",
    "электроэнергия",
    "\n",
    "\n\n",
    "  ",
    "почему так дорого?",
    "подскажите, всё ли верно",
]

# Signatures end a text: a mail app's line, a "--" line, "С уважением" and a name.
_SIGNATURES = [
    "\nОтправлено с iPhone",
    "\nSent from my Galaxy S23",
    "\n--\nИванов И.И.",
    "\nС уважением, Сидоров",
    "\nС уважением,\nПетрова А. 89161234567",
]

# Where noise may stand: around the whole text, between the account and the
# readings, between labelled readings. Not between two bare readings: a word there
# may be what tells them apart ("5450 прошлый 5300"), and the gateway asks.
_SLOTS = re.compile(r"(?<=\d) (?=(?:Т\d|день|ночь|Д|Н|пик|полупик|ЛС|показания) ?\d*)")


def _fill(template: str, account: str, readings: list[str]) -> str:
    return template.format(a=account, **{f"r{i}": r for i, r in enumerate(readings)})


def _projection(parsed: object) -> object:
    if isinstance(parsed, ParsedReadings):
        return (
            parsed.numbers,
            parsed.labelled,
            parsed.account_hint,
            parsed.meter_hint,
            parsed.total,
        )
    return parsed


@st.composite
def _noisy_message(draw: st.DrawFn) -> tuple[str, str, list[str]]:
    template, count = draw(st.sampled_from(_TEMPLATES))
    account = draw(_account)
    readings = draw(st.lists(_reading, min_size=count, max_size=count))
    clean = _fill(template, account, readings)
    noisy = clean
    before = draw(st.lists(st.sampled_from(_NOISE), max_size=2))
    after = draw(st.lists(st.sampled_from(_NOISE), max_size=3))
    slots = [m.start() for m in _SLOTS.finditer(clean)]
    if slots and template.startswith("{a} ") and " " in template[4:]:
        slots.append(len(account))  # right after the bare account
    inside = draw(st.lists(st.sampled_from(slots), max_size=2, unique=True)) if slots else []
    for position in sorted(inside, reverse=True):
        noise = draw(st.sampled_from(_NOISE))
        noisy = f"{noisy[:position]} {noise} {noisy[position:]}"
    signature = draw(st.sampled_from(["", "", *_SIGNATURES]))
    noisy = " ".join(before) + " " + noisy + " " + " ".join(after) + signature
    return clean, noisy, readings


@settings(max_examples=3000, deadline=None)
@given(_noisy_message())
def test_noise_never_changes_what_is_read(message: tuple[str, str, list[str]]) -> None:
    """Signatures, names, greetings, emoji, phone numbers, dates, filler and line breaks
    around a valid message, or between its account and readings, read the same."""
    clean, noisy, readings = message
    expected = _parser.parse(clean)
    assert isinstance(expected, ParsedReadings), clean
    actual = _parser.parse(noisy)
    assert _projection(expected) == _projection(actual), noisy
    assert isinstance(actual, ParsedReadings)
    bare = tuple(n for n in actual.numbers if n in readings)
    assert GatewayService._word_between_readings(actual, bare) is None, noisy


_TO_LATIN = str.maketrans("АВЕКМНОРСТХУЗ", "ABEKMHOPCTXY3")
_DIGIT_LOOK_ALIKES = {
    "0": "OoОо",
    "1": "lI",
    "3": "ЗзЭ",
    "5": "S",
    "6": "б",
    "8": "B",
    "9": "g",
}


@settings(max_examples=2000, deadline=None)
@given(
    st.sampled_from(_TEMPLATES),
    _account,
    st.lists(_reading, min_size=3, max_size=3),
    st.data(),
)
def test_a_look_alike_letter_in_a_reading_is_never_read(
    template: tuple[str, int], account: str, readings: list[str], data: st.DataObject
) -> None:
    """A reading digit typed as a look-alike letter ("54O0", "12З4") makes the text
    unreadable: nothing of it can be booked."""
    text_template, count = template
    readings = readings[:count]
    which = data.draw(st.integers(0, count - 1))
    reading = readings[which]
    places = [i for i, digit in enumerate(reading) if digit in _DIGIT_LOOK_ALIKES]
    if not places:
        return
    place = data.draw(st.sampled_from(places))
    letter = data.draw(st.sampled_from(_DIGIT_LOOK_ALIKES[reading[place]]))
    garbled = reading[:place] + letter + reading[place + 1 :]
    readings = [*readings[:which], garbled, *readings[which + 1 :]]
    parsed = _parser.parse(_fill(text_template, account, readings))
    if isinstance(parsed, ParsedReadings) and parsed.account_hint is not None:
        # "НS000" fits the alphanumeric account pattern: it is then an account the
        # database must know, and nothing is booked to the account typed before it
        assert letter.upper() in parsed.account_hint.translate(_TO_LATIN), parsed
        return
    assert isinstance(parsed, ParseFailure), (readings, parsed)


_PIECES = [
    "ЛС", "Т1", "Т2", "день", "ночь", "Д", "Н", "пик", "итого", "№", "тел.", "Иванов",
    "спасибо", "за октябрь 2026 г.", "5450", "2130", "054321", "1234567833", "123-456-7833",
    "٥٤٥٠", "１２３４", "54O0", "кВт*ч", "\n", "1)", "2.", "+7 916 123-45-67", "?", "N", "#",
]  # fmt: skip


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=10), st.sampled_from([" ", "", ", ", "\n"]))
def test_every_number_read_is_in_the_text(pieces: list[str], separator: str) -> None:
    """Every reading the grammar returns is a number of the text as typed (after the
    digits of other scripts are read as digits): nothing is made up or glued."""
    text = separator.join(pieces)
    parsed = _parser.parse(text)
    parts = parsed.parts if isinstance(parsed, SeveralReadings) else (parsed,)
    digits_typed = normalise(text)
    for part in parts:
        if not isinstance(part, ParsedReadings):
            continue
        values = [*part.numbers, *(value for _, value in part.labelled)]
        if part.total is not None:
            values.append(part.total)
        for value in values:
            # "Т15450" is Т1 and 5450: the zone digit glued to a label is not the value's
            glued = r"(?:(?<![0-9])|(?<=[тt][123]))"
            assert re.search(rf"{glued}{value}(?![0-9])", digits_typed.lower()), (text, value)
