"""Read an SMS text into a ParsedMessage: readings, a command, or a labelled failure.

    MessageParser.parse(text)
      ├── ParsedReadings   numbers, labelled values, account/meter hints
      ├── ParsedCommand    HELP, LAST, REGISTER, STOP, START
      └── ParseFailure     a ParseFailureReason the reply can explain

The grammar (sms.lark) is compiled on first use, once per account pattern, and
shared by every MessageParser with that pattern. Lark exceptions are turned into
ParseFailure here and never leave the package; `parse` never raises for a str.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import cast

from lark import Lark, Token, Transformer
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedToken

from sms_gateway.domain.model import Zone
from sms_gateway.domain.parsed import (
    Command,
    ParsedCommand,
    ParsedMessage,
    ParsedReadings,
    ParseFailure,
    ParseFailureReason,
)

MAX_TEXT_LENGTH = 480
"""Longer texts are refused unread: three concatenated SMS parts, far more than a reading needs."""

DEFAULT_ACCOUNT_PATTERN = r"\d{10,12}|[A-Z]{2,4}\d{3,10}"

# Cyrillic capitals that look like Latin ones; account tokens are compared in Latin.
_LOOK_ALIKE_TO_LATIN = str.maketrans("АВЕКМНОРСТХУ", "ABEKMHOPCTXY")

_ZONE_BY_LABEL = {"LABEL_T1": Zone.T1, "LABEL_T2": Zone.T2, "LABEL_T3": Zone.T3}

# A letter or a digit of any script: a text without one is empty.
_ALPHANUMERIC = _WORD_CHAR = re.compile(r"[^\W_]")

# The serial suffix of REG must identify a meter; fewer digits match too many.
_MIN_METER_DIGITS = 4

Reason = ParseFailureReason


def fold_account(token: str) -> str:
    """The canonical form of an account token: upper case, look-alike letters in Latin."""
    return token.upper().translate(_LOOK_ALIKE_TO_LATIN)


def normalise(text: str) -> str:
    """NFKC (full-width digits, no-break spaces), keeping "№", which NFKC spells "No"."""
    if "№" not in text:
        return unicodedata.normalize("NFKC", text)
    return "№".join(unicodedata.normalize("NFKC", part) for part in text.split("№"))


# ---- what the transformer hands to `readings` ---------------------------------


@dataclass(frozen=True, slots=True)
class _MarkedAccount:
    marker: Token
    value: Token


@dataclass(frozen=True, slots=True)
class _MarkedMeter:
    marker: Token
    value: Token


@dataclass(frozen=True, slots=True)
class _Labelled:
    label: Token
    value: Token


@dataclass(frozen=True, slots=True)
class _Reference:
    """An account or meter argument of a command; `marker` is ЛС/ПУ when given."""

    marker: Token | None
    value: Token


_Item = _MarkedAccount | _MarkedMeter | _Labelled | Token


class _Failed(Exception):
    """Internal: a transformer step found the message unreadable, at `token` if given."""

    def __init__(self, reason: ParseFailureReason, token: Token | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.token = token


class SmsTransformer(Transformer[Token, ParsedMessage]):
    """Turns the parse of one SMS into the domain dataclasses.

    Runs inside the LALR parser, so no tree is built. A failure found here is
    raised as `_Failed` and turned into a ParseFailure by MessageParser.parse.
    """

    def __init__(self, account_pattern: re.Pattern[str]) -> None:
        super().__init__(visit_tokens=False)
        self._account_pattern = account_pattern

    def start(self, children: list[ParsedMessage]) -> ParsedMessage:
        return children[0]

    # -- commands --

    def help_command(self, _children: list[Token]) -> ParsedCommand:
        return ParsedCommand(Command.HELP)

    def stop_command(self, _children: list[Token]) -> ParsedCommand:
        return ParsedCommand(Command.STOP)

    def start_command(self, _children: list[Token]) -> ParsedCommand:
        return ParsedCommand(Command.START)

    def last_command(self, children: list[Token | _Reference]) -> ParsedCommand:
        reference = children[1] if len(children) > 1 else None
        if not isinstance(reference, _Reference):
            return ParsedCommand(Command.LAST)
        return ParsedCommand(Command.LAST, account=self.account(reference.value))

    def register_command(self, children: list[Token | _Reference]) -> ParsedCommand:
        command, account_ref, meter_ref = children
        assert isinstance(command, Token)
        assert isinstance(account_ref, _Reference)
        assert isinstance(meter_ref, _Reference)
        account = self.account(account_ref.value)
        digits = self.digits(meter_ref.value)
        if len(digits) < _MIN_METER_DIGITS:
            raise _Failed(Reason.COMMAND_ARGUMENT, command)
        return ParsedCommand(Command.REGISTER, account=account, argument=digits)

    def account_ref(self, children: list[Token]) -> _Reference:
        return _Reference(children[0] if len(children) > 1 else None, children[-1])

    def meter_ref(self, children: list[Token]) -> _Reference:
        return _Reference(children[0] if len(children) > 1 else None, children[-1])

    # -- readings --

    def marked_account(self, children: list[Token]) -> _MarkedAccount:
        return _MarkedAccount(children[0], children[1])

    def marked_meter(self, children: list[Token]) -> _MarkedMeter:
        return _MarkedMeter(children[0], children[1])

    def labelled(self, children: list[Token]) -> _Labelled:
        return _Labelled(children[0], children[1])

    def readings(self, items: list[_Item]) -> ParsedReadings | ParsedCommand:
        if len(items) == 1 and isinstance(items[0], Token) and items[0] == "0":
            # A lone "0" is the help request of phones that can only send digits.
            return ParsedCommand(Command.HELP)
        return _Readings(self).build(items)

    # -- values --

    def account(self, value: Token) -> str:
        """An account value: digits as typed, or an alphanumeric token in canonical form."""
        if value.type == "NUMBER":
            return str(value)
        folded = fold_account(value)
        if self._account_pattern.fullmatch(folded):
            return folded
        raise _Failed(Reason.GARBLED_NUMBER, value)

    def digits(self, value: Token) -> str:
        """A meter serial or a reading: only plain digits will do."""
        if value.type != "NUMBER":
            raise _Failed(Reason.GARBLED_NUMBER, value)
        return str(value)

    def is_account(self, token: str) -> bool:
        return self._account_pattern.fullmatch(fold_account(token)) is not None


class _Readings:
    """Collects the items of a readings message and checks how they combine."""

    def __init__(self, transformer: SmsTransformer) -> None:
        self._transformer = transformer
        self.numbers: list[str] = []
        self.labelled: list[tuple[Zone, int]] = []
        self.account: str | None = None
        self.meter: str | None = None
        self._zones: set[Zone] = set()

    def build(self, items: Sequence[_Item]) -> ParsedReadings:
        for item in items:
            self._add(item)
        if not self.numbers and not self.labelled:
            raise _Failed(Reason.NO_READINGS)
        return ParsedReadings(
            numbers=tuple(self.numbers),
            labelled=tuple(self.labelled),
            account_hint=self.account,
            meter_hint=self.meter,
        )

    def _add(self, item: _Item) -> None:
        if isinstance(item, Token):
            self._add_bare(item)
        elif isinstance(item, _Labelled):
            self._add_labelled(item)
        elif isinstance(item, _MarkedAccount):
            self._set_account(item.marker, self._transformer.account(item.value))
        else:
            self._set_meter(item.marker, self._transformer.digits(item.value))

    def _add_bare(self, token: Token) -> None:
        if token.type == "NUMBER":
            # After a label only an account may stand bare: "Т1 5450 Т2 2130 5550001112".
            if self.labelled and not self._transformer.is_account(token):
                raise _Failed(Reason.MIXED_LABELS, token)
            self.numbers.append(str(token))
        elif self._transformer.is_account(token):
            self._set_account(token, fold_account(token))
        else:
            raise _Failed(Reason.GARBLED_NUMBER, token)

    def _add_labelled(self, item: _Labelled) -> None:
        zone = _ZONE_BY_LABEL[item.label.type]
        if zone in self._zones:
            raise _Failed(Reason.REPEATED_ZONE, item.label)
        self._zones.add(zone)
        self.labelled.append((zone, int(self._transformer.digits(item.value))))

    def _set_account(self, marker: Token, account: str) -> None:
        if self.account is not None and self.account != account:
            raise _Failed(Reason.REPEATED_ZONE, marker)
        self.account = account

    def _set_meter(self, marker: Token, meter: str) -> None:
        if self.meter is not None and self.meter != meter:
            raise _Failed(Reason.REPEATED_ZONE, marker)
        self.meter = meter


# ---- LALR errors -> reasons ----------------------------------------------------

# Texts that fail the way a subscriber's text fails. Each is parsed once, when the
# parser is built, and the LALR state it stops in is labelled with the reason: the
# same idea as Lark's UnexpectedInput.match_examples, looked up in a dict instead
# of re-parsing every example on each failure. States not listed fall back to
# UNKNOWN_WORD (a command word or a marker where it makes no sense).
_ERROR_EXAMPLES: dict[ParseFailureReason, tuple[str, ...]] = {
    Reason.NO_READINGS: ("спасибо", "показания за май"),
    Reason.LABEL_WITHOUT_VALUE: tuple(
        f"{before}{marker}{after}"
        for marker in ("т1", "т2", "т3", "лс", "пу")
        for before in ("", "5 ", "т1 5 ", "лс 5 ", "пу 5 ")
        for after in ("", " т2 5", " лс 5", " пу 5", " help")
    ),
    Reason.COMMAND_ARGUMENT: tuple(
        f"{command}{arguments}"
        for command, argument_lists in (
            ("help", (" 5", " т1")),
            ("stop", (" 5", " т1")),
            ("start", (" 5", " т1")),
            ("last", (" т1", " 5 5", " лс", " лс т1", " лс 5 5")),
            ("reg", ("", " т1", " 5", " лс", " лс 5", " 5 пу", " 5 т1", " 5 5 5", " 5 пу 5 5")),
        )
        for arguments in argument_lists
    ),
}


@dataclass(frozen=True, slots=True)
class _Compiled:
    lark: Lark
    reason_by_state: dict[int, ParseFailureReason]


@functools.cache
def _compiled(account_pattern: str) -> _Compiled:
    """The LALR parser for one account pattern, built on first use and kept."""
    transformer = SmsTransformer(re.compile(account_pattern))
    lark = Lark.open_from_package(
        "grammar",
        "sms.lark",
        parser="lalr",
        lexer="basic",
        transformer=transformer,
    )
    return _Compiled(lark, _label_error_states(lark, _ERROR_EXAMPLES.items()))


def _label_error_states(
    lark: Lark, examples: Iterable[tuple[ParseFailureReason, Iterable[str]]]
) -> dict[int, ParseFailureReason]:
    reason_by_state: dict[int, ParseFailureReason] = {}
    for reason, texts in examples:
        for text in texts:
            try:
                lark.parse(text)
            except UnexpectedToken as exc:
                state = _lalr_state(exc)
                known = reason_by_state.setdefault(state, reason)
                if known is not reason:
                    raise RuntimeError(f"{text!r}: state {state} is {known}, not {reason}") from exc
            else:
                raise RuntimeError(f"error example {text!r} parses")
    return reason_by_state


class MessageParser:
    r"""Reads SMS texts; one instance serves any number of messages and threads.

    account_pattern: a regex an account token must fullmatch after upper-casing
    and folding look-alike Cyrillic letters to Latin, e.g. r"\d{10,12}".
    """

    def __init__(self, account_pattern: str = DEFAULT_ACCOUNT_PATTERN) -> None:
        re.compile(account_pattern)  # a bad pattern is a configuration error, found now
        self._account_pattern = account_pattern

    def parse(self, text: str) -> ParsedMessage:
        if len(text) > MAX_TEXT_LENGTH:
            return ParseFailure(Reason.TOO_LONG, text[:30])
        shown = normalise(text)
        if not _ALPHANUMERIC.search(shown):
            return ParsedCommand(Command.HELP) if "?" in shown else ParseFailure(Reason.EMPTY)
        lexed = shown.lower()
        if len(lexed) != len(shown):  # "İ" lower-cases to two characters
            shown = lexed
        compiled = _compiled(self._account_pattern)
        try:
            # The transformer runs inside the parser, so parse returns its result.
            message = cast(ParsedMessage, compiled.lark.parse(lexed))
        except _Failed as failed:
            fragment = _slice(shown, failed.token) if failed.token is not None else ""
            return ParseFailure(failed.reason, fragment)
        except UnexpectedToken as exc:
            return _token_failure(exc, compiled.reason_by_state, shown)
        except UnexpectedCharacters as exc:
            return _character_failure(shown, exc.pos_in_stream)
        except LarkError as exc:  # pragma: no cover - the LALR frontend raises only the above
            return ParseFailure(Reason.UNKNOWN_WORD, str(exc)[:30])
        return message


def _slice(shown: str, token: Token) -> str:
    """The token as the subscriber typed it (case kept), for the reply."""
    return shown[token.start_pos : token.end_pos]


def _token_failure(
    exc: UnexpectedToken, reason_by_state: dict[int, ParseFailureReason], shown: str
) -> ParseFailure:
    reason = reason_by_state.get(_lalr_state(exc), Reason.UNKNOWN_WORD)
    # Values shifted before the failure: tokens, or what the transformer made of them.
    shifted: list[object] = exc.state.value_stack
    if reason is Reason.LABEL_WITHOUT_VALUE:
        culprit = shifted[-1]
    elif reason is Reason.COMMAND_ARGUMENT:
        culprit = shifted[0]
    elif reason is Reason.NO_READINGS:
        culprit = None
    else:
        culprit = exc.token
    if isinstance(culprit, Token) and culprit.type != "$END":
        return ParseFailure(reason, _slice(shown, culprit))
    return ParseFailure(reason)


def _lalr_state(exc: UnexpectedToken) -> int:
    """The LALR state the parser stopped in (exc.state is the whole parser state)."""
    position: int = exc.state.position
    return position


def _character_failure(shown: str, position: int | None) -> ParseFailure:
    """No terminal matches at `position`: report the whole word around it."""
    start = end = position or 0
    while start > 0 and _WORD_CHAR.match(shown, start - 1):
        start -= 1
    while end < len(shown) and _WORD_CHAR.match(shown, end):
        end += 1
    word = shown[start:end] or shown[start : start + 1]
    if any(char.isdigit() for char in word):
        return ParseFailure(Reason.GARBLED_NUMBER, word)
    return ParseFailure(Reason.UNKNOWN_WORD, word)
