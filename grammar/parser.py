"""Read an SMS text into a ParsedMessage: readings, a command, or a labelled failure.

    MessageParser.parse(text)
      ├── ParsedReadings   numbers, labelled values, account/meter hints
      ├── ParsedCommand    HELP, LAST, REGISTER, STOP, START
      └── ParseFailure     a ParseFailureReason the reply can explain

The grammar (sms.lark) is compiled on first use, once per account pattern, and
shared by every MessageParser with that pattern, with lark-cython's LALR engine
(plain Lark when lark-cython does not import). Lark exceptions are turned into
ParseFailure here and never leave the package; `parse` never raises for a str.
"""

from __future__ import annotations

import functools
import operator
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, cast

from lark import Lark, Token, Transformer
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedToken
from lark.lexer import LexerThread
from lark.parsers.lalr_analysis import Shift

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
    if text.isascii():  # NFKC leaves ASCII as it is
        return text
    if "№" not in text:
        return unicodedata.normalize("NFKC", text)
    return "№".join(unicodedata.normalize("NFKC", part) for part in text.split("№"))


# ---- the transformer ------------------------------------------------------------


class _Token(Protocol):
    """What both engines' tokens offer: lark.Token (a str) and lark_cython.Token (not)."""

    @property
    def type(self) -> str: ...

    @property
    def value(self) -> str: ...

    @property
    def start_pos(self) -> int | None: ...

    @property
    def end_pos(self) -> int | None: ...


# A reference argument of a command: (value,) or (marker, value).
_Reference = tuple[_Token, ...]

# The readings of a message as the grammar builds them, one item around the rest:
# (token, rest) for a bare value, (marker, value, rest) for a marked or labelled
# one, () at the end.
_ReadingItems = tuple[Any, ...]

_HELP = ParsedCommand(Command.HELP)


class _Failed(Exception):
    """Internal: a transformer step found the message unreadable, at `token` if given."""

    def __init__(self, reason: ParseFailureReason, token: _Token | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.token = token


class SmsTransformer(Transformer[_Token, ParsedMessage]):
    """Turns the parse of one SMS into the domain dataclasses.

    Runs inside the LALR parser, so no tree is built. A failure found here is
    raised as `_Failed` and turned into a ParseFailure by MessageParser.parse.

    The rules reduced once per token only gather tokens into tuples; their
    callbacks are builtins, because a Python call there costs more than the
    LALR step. The Python methods run once per message.
    """

    start = operator.itemgetter(0)
    account_ref = meter_ref = reading_item = no_more_items = tuple

    def __init__(self, account_pattern: re.Pattern[str]) -> None:
        super().__init__(visit_tokens=False)
        self._account_pattern = account_pattern

    # -- commands --

    def help_command(self, _children: list[_Token]) -> ParsedCommand:
        return _HELP

    def stop_command(self, _children: list[_Token]) -> ParsedCommand:
        return ParsedCommand(Command.STOP)

    def start_command(self, _children: list[_Token]) -> ParsedCommand:
        return ParsedCommand(Command.START)

    def last_command(self, children: list[Any]) -> ParsedCommand:
        if len(children) == 1:
            return ParsedCommand(Command.LAST)
        reference: _Reference = children[1]
        return ParsedCommand(Command.LAST, account=self.account(reference[-1]))

    def register_command(self, children: list[Any]) -> ParsedCommand:
        command: _Token = children[0]
        account_ref: _Reference = children[1]
        meter_ref: _Reference = children[2]
        account = self.account(account_ref[-1])
        digits = self.digits(meter_ref[-1])
        if len(digits) < _MIN_METER_DIGITS:
            raise _Failed(Reason.COMMAND_ARGUMENT, command)
        return ParsedCommand(Command.REGISTER, account=account, argument=digits)

    # -- readings --

    def readings_message(self, children: list[_ReadingItems]) -> ParsedReadings | ParsedCommand:
        """Checks how the items combine, front to back; the first bad item is reported."""
        items = children[0]
        if len(items) == 2 and not items[1] and items[0].value == "0":
            # A lone "0" is the help request of phones that can only send digits.
            return _HELP
        numbers: list[str] = []
        labelled: list[tuple[Zone, int]] = []
        account: str | None = None
        meter: str | None = None
        zones: set[Zone] = set()
        while items:
            if len(items) == 2:
                token: _Token
                token, items = items
                if token.type == "NUMBER":
                    # After a label only an account may stand bare: "Т1 5450 Т2 2130 5550001112".
                    if labelled and not self.is_account(token.value):
                        raise _Failed(Reason.MIXED_LABELS, token)
                    numbers.append(token.value)
                elif self.is_account(token.value):
                    account = _only(account, fold_account(token.value), token)
                else:
                    raise _Failed(Reason.GARBLED_NUMBER, token)
                continue
            marker: _Token
            value: _Token
            marker, value, items = items
            if marker.type == "ACCOUNT_KW":
                account = _only(account, self.account(value), marker)
            elif marker.type == "METER_KW":
                meter = _only(meter, self.digits(value), marker)
            else:
                zone = _ZONE_BY_LABEL[marker.type]
                if zone in zones:
                    raise _Failed(Reason.REPEATED_ZONE, marker)
                zones.add(zone)
                labelled.append((zone, int(self.digits(value))))
        if not numbers and not labelled:
            raise _Failed(Reason.NO_READINGS)
        return ParsedReadings(
            numbers=tuple(numbers),
            labelled=tuple(labelled),
            account_hint=account,
            meter_hint=meter,
        )

    # -- values --

    def account(self, value: _Token) -> str:
        """An account value: digits as typed, or an alphanumeric token in canonical form."""
        if value.type == "NUMBER":
            return value.value
        folded = fold_account(value.value)
        if self._account_pattern.fullmatch(folded):
            return folded
        raise _Failed(Reason.GARBLED_NUMBER, value)

    def digits(self, value: _Token) -> str:
        """A meter serial or a reading: only plain digits will do."""
        if value.type != "NUMBER":
            raise _Failed(Reason.GARBLED_NUMBER, value)
        return value.value

    def is_account(self, token: str) -> bool:
        return self._account_pattern.fullmatch(fold_account(token)) is not None


def _only(known: str | None, given: str, marker: _Token) -> str:
    """One message serves one account and one meter: a different second one is refused."""
    if known is not None and known != given:
        raise _Failed(Reason.REPEATED_ZONE, marker)
    return given


# ---- LALR errors -> reasons ----------------------------------------------------

# Texts that fail the way a subscriber's text fails. Each is parsed once, when the
# parser is built, and the LALR state it stops in is labelled with the reason: the
# same idea as Lark's UnexpectedInput.match_examples, looked up in a dict instead
# of re-parsing every example on each failure. States not listed fall back to
# UNKNOWN_WORD (a command word or a marker where it makes no sense). A text with
# no reading at all parses, and the transformer calls it NO_READINGS.
_ERROR_EXAMPLES: dict[ParseFailureReason, tuple[str, ...]] = {
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
    parse: Callable[[str], Any]
    reason_by_state: dict[int, ParseFailureReason]
    token_class: type


@functools.cache
def _compiled(account_pattern: str, cython: bool = True) -> _Compiled:
    """The LALR parser for one account pattern, built on first use and kept.

    lark-cython runs the lexer and the LALR loop in C; plain Lark, the fallback
    when it is not installed, reads every text the same way.
    """
    plugins, token_class = _engine() if cython else ({}, Token)
    transformer = SmsTransformer(re.compile(account_pattern))
    lark = Lark.open_from_package(
        "grammar",
        "sms.lark",
        parser="lalr",
        lexer="basic",
        transformer=transformer,
        _plugins=plugins,
    )
    _compare_rules_by_identity(lark)
    parse = _lalr_loop(lark)
    reason_by_state = _label_error_states(parse, _ERROR_EXAMPLES.items())
    return _Compiled(parse, reason_by_state, token_class)


def _engine() -> tuple[dict[str, Any], type]:
    """lark-cython's plugins and token class, or plain Lark's when it does not import."""
    try:
        import lark_cython
    except ImportError:  # pragma: no cover - a dependency; missing only in a broken install
        return {}, Token
    return lark_cython.plugins, lark_cython.Token


class _Reduction:
    """A grammar rule as the LALR loop uses it: its length and the rule to go to."""

    __slots__ = ("expansion", "origin")

    def __init__(self, rule: Any) -> None:
        self.expansion = tuple(rule.expansion)
        self.origin = _RuleName(str(rule.origin.name))


class _RuleName:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


def _compare_rules_by_identity(lark: Lark) -> None:
    """Put rules into the LALR table that the parser compares in C, not in Python.

    On every reduction both engines compare the rule with the end state, look it up
    among the callbacks and look its name up in the goto table. Lark's Rule defines
    `__eq__` in Python and its names are lark.Token, a str subclass with a Python
    `__eq__`: together half the parse time under lark-cython. A `_Reduction` per
    rule, compared by identity and named by a plain str, does the same in C.
    """
    frontend: Any = lark.parser
    states: dict[int, dict[str, tuple[Any, Any]]] = frontend.parser._parse_table.states
    callbacks: dict[Any, Any] = frontend.parser_conf.callbacks
    reductions: dict[Any, _Reduction] = {}
    for actions in states.values():
        for symbol, (action, argument) in actions.items():
            if action is Shift:
                continue
            reduction = reductions.get(argument)
            if reduction is None:
                reduction = reductions[argument] = _Reduction(argument)
                callbacks[reduction] = callbacks[argument]
            actions[symbol] = (action, reduction)


def _lalr_loop(lark: Lark) -> Callable[[str], Any]:
    """`lark.parse` without the layers that check its arguments on every call.

    Lark.parse goes through the parsing frontend, which picks the start rule and
    the lexer thread class on each call; for short texts that is a tenth of the
    time. Both engines' LALR parsers take a lexer thread and the start rule.
    """
    frontend: Any = lark.parser
    lalr = frontend.parser.parser
    lexer = frontend.lexer
    make_lexer_thread = frontend.options._plugins.get("LexerThread", LexerThread).from_text
    (start,) = frontend.parser_conf.start

    def parse(text: str) -> Any:
        return lalr.parse(make_lexer_thread(lexer, text), start)

    return parse


def _label_error_states(
    parse: Callable[[str], object], examples: Iterable[tuple[ParseFailureReason, Iterable[str]]]
) -> dict[int, ParseFailureReason]:
    reason_by_state: dict[int, ParseFailureReason] = {}
    for reason, texts in examples:
        for text in texts:
            try:
                parse(text)
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
    cython: read with lark-cython (the default) or with plain Lark; both give the
    same results, plain Lark about three times slower.
    """

    def __init__(
        self, account_pattern: str = DEFAULT_ACCOUNT_PATTERN, *, cython: bool = True
    ) -> None:
        re.compile(account_pattern)  # a bad pattern is a configuration error, found now
        self._account_pattern = account_pattern
        self._cython = cython
        self._compiled: _Compiled | None = None

    def compile(self) -> None:
        """Build the parser now, not on the first message: the first subscriber after a
        start would otherwise wait for it (about a tenth of a second here)."""
        if self._compiled is None:
            self._compiled = _compiled(self._account_pattern, self._cython)

    def parse(self, text: str) -> ParsedMessage:
        if len(text) > MAX_TEXT_LENGTH:
            return ParseFailure(Reason.TOO_LONG, text[:30])
        shown = normalise(text)
        if not _ALPHANUMERIC.search(shown):
            return _HELP if "?" in shown else ParseFailure(Reason.EMPTY)
        lexed = shown.lower()
        if len(lexed) != len(shown):  # "İ" lower-cases to two characters
            shown = lexed
        compiled = self._compiled
        if compiled is None:
            compiled = self._compiled = _compiled(self._account_pattern, self._cython)
        try:
            # The transformer runs inside the parser, so parse returns its result.
            message: ParsedMessage = compiled.parse(lexed)
        except _Failed as failed:
            fragment = _slice(shown, failed.token) if failed.token is not None else ""
            return ParseFailure(failed.reason, fragment)
        except UnexpectedToken as exc:
            return _token_failure(exc, compiled, shown)
        except UnexpectedCharacters as exc:
            return _character_failure(shown, exc.pos_in_stream)
        except LarkError as exc:  # pragma: no cover - the LALR frontend raises only the above
            return ParseFailure(Reason.UNKNOWN_WORD, str(exc)[:30])
        return message


def _slice(shown: str, token: _Token) -> str:
    """The token as the subscriber typed it (case kept), for the reply."""
    return shown[token.start_pos : token.end_pos]


def _token_failure(exc: UnexpectedToken, compiled: _Compiled, shown: str) -> ParseFailure:
    reason = compiled.reason_by_state.get(_lalr_state(exc), Reason.UNKNOWN_WORD)
    # Values shifted before the failure: tokens, or what the transformer made of them.
    shifted: list[object] = exc.state.value_stack
    culprit: object
    if reason is Reason.LABEL_WITHOUT_VALUE:
        culprit = shifted[-1]
    elif reason is Reason.COMMAND_ARGUMENT:
        culprit = shifted[0]
    else:
        culprit = exc.token
    if isinstance(culprit, compiled.token_class):
        token = cast(_Token, culprit)
        if token.type != "$END":
            return ParseFailure(reason, _slice(shown, token))
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
