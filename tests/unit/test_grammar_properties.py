"""Properties of the SMS grammar that must hold for every text, not just the table."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from grammar import MessageParser
from grammar.parser import MAX_TEXT_LENGTH, normalise
from sms_gateway.domain.parsed import (
    ParsedCommand,
    ParsedReadings,
    ParseFailure,
    ParseFailureReason,
    SeveralReadings,
)
from tests.unit.grammar_cases import ACCOUNT_PATTERN

# Pieces subscribers' texts are made of, good and bad, to reach deep into the grammar
# far more often than uniformly random text would.
_PIECES = [
    "ЛС",
    "л/с",
    "лс№",
    "счет",
    "лицевой счет",
    "ACC",
    "АСС123",
    "ACC123",
    "ПУ",
    "№",
    "п/у",
    "Т1",
    "T2",
    "т3",
    "день",
    "ночь",
    "Д",
    "Н",
    "П",
    "ПП",
    "пик",
    "полупик",
    "day",
    "N",
    "добрый",
    "добрый день",
    "спасибо",
    "показания",
    "пок.",
    "кВт",
    "квт.ч",
    "kWh",
    "HELP",
    "?",
    "0",
    "LAST",
    "ИНФО",
    "REG",
    "РЕГ",
    "STOP",
    "СТАРТ",
    "5550001112",
    "1234567833",
    "5450",
    "2130",
    "0563",
    "12345678",
    "7",
    "12З4",
    "1O5",
    "l234",
    ",5",
    ".75",
    ",567",
    "дом",
    "İ",
    "ǅ",
    "ß",
    "١٢",
    "１２",
    "ﬁ",
]
_SEPARATORS = ["", " ", "  ", "\t", "\n", "\r\n", ",", ", ", ";", "*", "#", "_", "/", "-", "=",
               ":", ".", "!", "\u00a0", "\u3000"]  # fmt: skip

_parser = MessageParser(ACCOUNT_PATTERN)
_parser.parse("0")  # build the grammar now, not inside the first (timed) hypothesis example


def _assert_well_formed(text: str) -> None:
    message = _parser.parse(text)
    assert isinstance(message, ParsedReadings | SeveralReadings | ParsedCommand | ParseFailure)
    if isinstance(message, ParseFailure) and message.reason is not ParseFailureReason.TOO_LONG:
        shown = normalise(text)
        assert message.fragment in shown or message.fragment in shown.lower()


@given(st.text(max_size=MAX_TEXT_LENGTH + 20))
def test_any_text_parses_to_a_message(text: str) -> None:
    """No text makes the parser raise; failures quote a fragment of the text."""
    _assert_well_formed(text)


@given(st.lists(st.tuples(st.sampled_from(_PIECES), st.sampled_from(_SEPARATORS)), max_size=12))
def test_any_mix_of_known_pieces_parses_to_a_message(pieces: list[tuple[str, str]]) -> None:
    """Keywords, labels, numbers and garbage in any order never make the parser raise."""
    _assert_well_formed("".join(piece + separator for piece, separator in pieces))


_account = st.from_regex(r"[0-9]{10,12}", fullmatch=True)
_reading = st.from_regex(r"[0-9]{1,8}", fullmatch=True)
_separator = st.sampled_from([" ", "  ", "\t", "\n", "\r\n", ", ", ";", " ; ", "*", "#", "_",
                              "/", ",", " - "])  # fmt: skip


@given(
    account=_account,
    readings=st.lists(st.tuples(_separator, _reading), min_size=1, max_size=3),
    greeting=st.sampled_from(["", "Здравствуйте! ", "добрый день, ", "Показания: "]),
    ending=st.sampled_from(["", ".", " кВт", "квт.ч", " спасибо", "\n"]),
)
def test_numbers_round_trip(
    account: str, readings: list[tuple[str, str]], greeting: str, ending: str
) -> None:
    """An account and readings joined by any separators come back as typed, in order."""
    # ",5" and ",75" are decimal fractions, not a separator and a number
    assume(all(separator != "," or len(reading) > 2 for separator, reading in readings))
    text = greeting + account + "".join(separator + reading for separator, reading in readings)
    expected = (account, *(reading for _, reading in readings))
    parsed = _parser.parse(text + ending)
    assert isinstance(parsed, ParsedReadings)
    assert (expected, (), None) == (parsed.numbers, parsed.labelled, parsed.account_hint)


_LOOK_ALIKES = {
    "A": "Аа", "B": "В", "C": "Сс", "E": "Ее", "H": "Н", "K": "Кк", "M": "М", "O": "Оо",
    "P": "Рр", "T": "Т", "X": "Хх", "Y": "Уу",
}  # fmt: skip


@st.composite
def _typed_letter(draw: st.DrawFn) -> tuple[str, str]:
    """A Latin capital and how a subscriber may type it (either case, either script)."""
    latin = draw(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    typed = draw(st.sampled_from([latin, latin.lower(), *_LOOK_ALIKES.get(latin, "")]))
    return latin, typed


@given(
    letters=st.lists(_typed_letter(), min_size=2, max_size=4),
    digits=st.from_regex(r"[0-9]{3,10}", fullmatch=True),
    reading=_reading,
)
def test_alphanumeric_accounts_are_folded(
    letters: list[tuple[str, str]], digits: str, reading: str
) -> None:
    """ACC123 typed in any case and with Cyrillic look-alikes is account ACC123."""
    latin = "".join(letter for letter, _ in letters)
    # "DAY123" is the day label and 123; "LS1234567890" the keyword and an account whose
    # digits alone fit the pattern (see grammar/README.md)
    assume(latin != "DAY")
    # "KW000 0": a unit word ("кВт", grammar/lexer.py _UNIT_ENDS), then two numbers
    assume(latin not in ("KW", "KVT", "KBT", "BT", "VT"))
    assume(not (latin in ("LS", "ACC", "SCHET", "LIC") and len(digits) >= 10))
    typed = "".join(letter for _, letter in letters) + digits
    expected = ParsedReadings(numbers=(reading,), account_hint=latin + digits)
    assert expected == _parser.parse(f"{typed} {reading}")


@pytest.mark.parametrize("length", [MAX_TEXT_LENGTH + 1, 2000])
def test_long_texts_are_refused_unread(length: int) -> None:
    """Texts longer than any reading message needs are refused without parsing."""
    message = _parser.parse("1" * length)
    assert ParseFailure(ParseFailureReason.TOO_LONG, "1" * 30) == message
