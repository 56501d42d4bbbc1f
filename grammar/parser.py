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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, cast

from lark import Lark, Token, Transformer
from lark.exceptions import LarkError, UnexpectedToken
from lark.parsers.lalr_analysis import Shift

from grammar.lexer import Lexed, SmsLexer
from grammar.vocabulary import Vocabulary
from sms_gateway.domain.model import Zone
from sms_gateway.domain.parsed import (
    Command,
    ParsedCommand,
    ParsedMessage,
    ParsedReadings,
    ParseFailure,
    ParseFailureReason,
    SeveralReadings,
    account_spans,
)

MAX_TEXT_LENGTH = 480
"""Longer texts are refused unread: three concatenated SMS parts, far more than a reading needs."""

DEFAULT_ACCOUNT_PATTERN = r"\d{10,12}|[A-Z]{2,4}\d{3,10}"

# Cyrillic capitals that look like Latin ones; account tokens are compared in Latin.
_LOOK_ALIKE_TO_LATIN = str.maketrans("АВЕКМНОРСТХУ", "ABEKMHOPCTXY")

_ZONE_BY_LABEL = {"LABEL_T1": Zone.T1, "LABEL_T2": Zone.T2, "LABEL_T3": Zone.T3}

# A letter or a digit of any script: a text without one is empty.
_ALPHANUMERIC = re.compile(r"[^\W_]")

# The serial suffix of REG must identify a meter; fewer digits match too many.
_MIN_METER_DIGITS = 4

Reason = ParseFailureReason


def fold_account(token: str) -> str:
    """The canonical form of an account token: upper case, look-alike letters in Latin."""
    return token.upper().translate(_LOOK_ALIKE_TO_LATIN)


# A decimal digit of any script but ASCII ("٥٤٥٠", "۵۴۵۰", "५४५०"): read as that digit.
_OTHER_DIGIT = re.compile(r"(?![0-9])\d")


def _ascii_digit(match: re.Match[str]) -> str:
    return str(unicodedata.decimal(match[0]))


def normalise(text: str) -> str:
    """NFKC (full-width digits, no-break spaces), keeping "№", which NFKC spells "No";
    every decimal digit in ASCII. The length may change (NFKC), never afterwards."""
    if text.isascii():  # NFKC leaves ASCII as it is
        return text
    if "№" not in text:
        text = unicodedata.normalize("NFKC", text)
    else:
        text = "№".join(unicodedata.normalize("NFKC", part) for part in text.split("№"))
    if _OTHER_DIGIT.search(text):
        text = _OTHER_DIGIT.sub(_ascii_digit, text)
    return text


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
    """Turns the parse of one SMS into commands, or into the items of a readings text.

    Runs inside the LALR parser, so no tree is built. A failure found here is
    raised as `_Failed` and turned into a ParseFailure by MessageParser.parse.
    The items of a readings text are read by `_ReadingsReader`, which also needs
    what the lexer noticed (joined numbers, a question).

    The rules reduced once per token only gather tokens into tuples; their
    callbacks are builtins, because a Python call there costs more than the
    LALR step. The Python methods run once per message.
    """

    start = operator.itemgetter(0)
    account_ref = meter_ref = reading_item = no_more_items = tuple
    readings_message = operator.itemgetter(0)

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
        if len(children) == 2:
            return ParsedCommand(Command.LAST)
        reference: _Reference = children[1]
        return ParsedCommand(
            Command.LAST, account=account_value(self._account_pattern, reference[-1])
        )

    def register_command(self, children: list[Any]) -> ParsedCommand:
        command: _Token = children[0]
        account_ref: _Reference = children[1]
        meter_ref: _Reference = children[2]
        account = account_value(self._account_pattern, account_ref[-1])
        digits = digits_value(meter_ref[-1])
        if len(digits) < _MIN_METER_DIGITS:
            raise _Failed(Reason.COMMAND_ARGUMENT, command)
        return ParsedCommand(Command.REGISTER, account=account, argument=digits)


def account_value(pattern: re.Pattern[str], value: _Token) -> str:
    """An account value: digits as typed, or an alphanumeric token in canonical form."""
    if value.type == "NUMBER":
        return value.value
    folded = fold_account(value.value)
    if pattern.fullmatch(folded):
        return folded
    raise _Failed(Reason.GARBLED_NUMBER, value)


def digits_value(value: _Token) -> str:
    """A meter serial or a reading: only plain digits will do."""
    if value.type != "NUMBER":
        raise _Failed(Reason.GARBLED_NUMBER, value)
    return value.value


class _Part:
    """The readings of one account and meter, gathered item by item."""

    __slots__ = ("account", "breaks", "joins", "labelled", "meter", "numbers", "total", "zones")

    def __init__(self, account: str | None = None) -> None:
        self.numbers: list[str] = []
        self.labelled: list[tuple[Zone, str]] = []
        self.zones: set[Zone] = set()
        self.account = account
        self.meter: str | None = None
        self.total: str | None = None
        self.breaks: list[tuple[int, str]] = []
        self.joins: list[tuple[int, int]] = []

    @property
    def has_values(self) -> bool:
        return bool(self.numbers or self.labelled or self.total)

    def readings(self, account_pattern: re.Pattern[str]) -> ParsedReadings:
        # Only runs of groups some of which join into an account shape are worth keeping.
        joins = tuple(
            run for run in self.joins if any(account_spans(self.numbers, (run,), account_pattern))
        )
        return ParsedReadings(
            numbers=tuple(self.numbers),
            labelled=tuple(self.labelled),
            account_hint=self.account,
            meter_hint=self.meter,
            total=self.total,
            breaks=tuple(self.breaks),
            joins=joins,
        )


class _ReadingsReader:
    """Reads the items of a readings text, front to back; the first bad item is reported.

    One message may hold several parts: a second, different account (after its
    marker, or bare after labelled readings) or a second, different meter starts a
    new part, decided on its own by the service.
    """

    def __init__(self, account_pattern: re.Pattern[str]) -> None:
        self._account_pattern = account_pattern

    def is_account(self, token: str) -> bool:
        return self._account_pattern.fullmatch(fold_account(token)) is not None

    def read(self, tree: _ReadingItems, lexed: Lexed) -> ParsedMessage:
        # Each item is (token, rest) or (marker, value, rest): kept whole, not sliced.
        items: list[tuple[Any, ...]] = []
        while tree:
            items.append(tree)
            tree = tree[-1]
        if len(items) == 1 and items[0][0].type == "NUMBER" and items[0][0].value == "0":
            # A lone "0" is the help request of phones that can only send digits.
            return _HELP
        parts = [_Part()]
        part = parts[0]
        word: _Token | None = None  # an unknown word since the last bare number
        index = 0
        while index < len(items):
            item = items[index]
            index += 1
            if len(item) == 2:
                token: _Token = item[0]
                kind = token.type
                if kind == "WORD":
                    if word is None and part.numbers:
                        word = token
                    continue
                if kind == "NUMBER":
                    value = token.value
                    if part.labelled:
                        # After a label only an account stands bare: "Т1 5450 Т2 2130 5550001112".
                        if not self.is_account(value):
                            raise _Failed(Reason.MIXED_LABELS, token)
                        if part.account is not None or any(map(self.is_account, part.numbers)):
                            part = _Part()
                            parts.append(part)
                            word = None
                    if word is not None and part.numbers:
                        part.breaks.append((len(part.numbers), word.value))
                    word = None
                    if (
                        token.start_pos in lexed.joined
                        and part.numbers
                        and items[index - 2][0].type == "NUMBER"
                    ):
                        self._join(part)
                    part.numbers.append(value)
                elif self.is_account(token.value):
                    part = self._account(parts, part, fold_account(token.value))
                else:
                    raise _Failed(Reason.GARBLED_NUMBER, token)
                continue
            word = None
            marker: _Token = item[0]
            value_token: _Token = item[1]
            kind = marker.type
            if kind == "SIGN" and value_token.type == "NUMBER":
                kind = (
                    "ACCOUNT_KW"
                    if self._account_pattern.fullmatch(value_token.value)
                    else "METER_KW"
                )
            if kind == "ACCOUNT_KW" or kind == "SIGN":
                account = account_value(self._account_pattern, value_token)
                if value_token.type == "NUMBER" and not self._account_pattern.fullmatch(account):
                    account, index = self._grouped_account(account, items, index, lexed)
                part = self._account(parts, part, account, marker)
            elif kind == "METER_KW":
                meter = digits_value(value_token)
                if part.meter is not None and part.meter != meter:
                    part = _Part(account=part.account)
                    parts.append(part)
                part.meter = meter
            elif kind == "TOTAL_KW":
                part.total = digits_value(value_token)
            else:
                if not part.labelled and self._account_opens_labels(part):
                    part = self._account_of_its_own(parts, part)
                zone = _ZONE_BY_LABEL[kind]
                if zone in part.zones:
                    raise _Failed(Reason.REPEATED_ZONE, marker)
                part.zones.add(zone)
                part.labelled.append((zone, digits_value(value_token)))
        pattern = self._account_pattern
        if len(parts) == 1:  # nearly every text
            if part.has_values:
                return part.readings(pattern)
            return self._no_readings(lexed)
        read = [p for p in parts if p.has_values or p.account is not None or p.meter is not None]
        if not any(p.has_values for p in read):
            return self._no_readings(lexed)
        if len(read) == 1:
            return read[0].readings(pattern)
        return SeveralReadings(tuple(p.readings(pattern) for p in read))

    @staticmethod
    def _no_readings(lexed: Lexed) -> ParsedCommand:
        """No value at all: the help reply for a question, else NO_READINGS."""
        if lexed.question:
            return _HELP
        raise _Failed(Reason.NO_READINGS)

    @staticmethod
    def _join(part: _Part) -> None:
        """The number about to be added is joined to the one before: extend or open a run."""
        end = len(part.numbers) + 1
        if part.joins and part.joins[-1][1] == end - 1:
            part.joins[-1] = (part.joins[-1][0], end)
        else:
            part.joins.append((end - 2, end))

    def _account(
        self, parts: list[_Part], part: _Part, account: str, marker: _Token | None = None
    ) -> _Part:
        """`account` is named: this part's account, or the start of a part of its own."""
        if part.account is None or part.account == account:
            part.account = account
            return part
        new = _Part(account=account)
        parts.append(new)
        return new

    def _account_opens_labels(self, part: _Part) -> bool:
        """ "1234567890 5450 2345678901 Т1 5450 Т2 2130": the bare number before the first
        label is a second account, after the readings of a first one."""
        numbers = part.numbers
        return (
            len(numbers) >= 2
            and self.is_account(numbers[-1])
            and not self.is_account(numbers[-2])
            and (part.account is not None or self.is_account(numbers[0]))
        )

    @staticmethod
    def _account_of_its_own(parts: list[_Part], part: _Part) -> _Part:
        """The part's last number taken out as the account of a new part."""
        account = part.numbers.pop()
        end = len(part.numbers)
        part.breaks = [(at, word) for at, word in part.breaks if at < end]
        part.joins = [(first, last) for first, last in part.joins if last <= end]
        new = _Part(account=account)
        parts.append(new)
        return new

    def _grouped_account(
        self, first: str, items: list[tuple[Any, ...]], index: int, lexed: Lexed
    ) -> tuple[str, int]:
        """ "ЛС 123 456 7890": the groups after the marker joined, where they make an account."""
        joined = first
        end = index
        best: tuple[str, int] | None = None
        while end < len(items) and len(items[end]) == 2:
            token = items[end][0]
            if token.type != "NUMBER" or token.start_pos not in lexed.joined:
                break
            joined += token.value
            end += 1
            if self._account_pattern.fullmatch(joined):
                best = (joined, end)
        return best if best is not None else (first, index)


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
        for marker in ("т1", "т2", "т3", "лс", "пу", "№")
        for before in ("", "5 ", "т1 5 ", "лс 5 ", "пу 5 ")
        for after in ("", " т2 5", " лс 5", " пу 5", " help")
        if not after.startswith(f" {marker} ")  # "лс лс", "т2 т2" are one marker
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
    parse: Callable[[list[object]], Any]
    lexer: SmsLexer
    reader: _ReadingsReader
    reason_by_state: dict[int, ParseFailureReason]
    token_class: type


@functools.cache
def _compiled(account_pattern: str, cython: bool = True) -> _Compiled:
    """The LALR parser for one account pattern, built on first use and kept.

    lark-cython runs the LALR loop in C; plain Lark, the fallback when it is not
    installed, reads every text the same way. The tokens come from SmsLexer.
    """
    plugins, token_class = _engine() if cython else ({}, Token)
    pattern = re.compile(account_pattern)
    transformer = SmsTransformer(pattern)
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
    lexer = SmsLexer(Vocabulary.default(), pattern, fold_account, token_class)

    def parse_text(text: str) -> object:
        return parse(lexer.lex(text, text).tokens)

    reason_by_state = _label_error_states(parse_text, _ERROR_EXAMPLES.items())
    return _Compiled(parse, lexer, _ReadingsReader(pattern), reason_by_state, token_class)


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


def _until_eof(tokens: list[object]) -> Iterator[object]:
    yield from tokens
    raise EOFError  # how lark-cython's parser learns that the text has ended


class _Tokens:
    """The lexer thread both LALR engines pull tokens from, one at a time.

    lark-cython calls `next_token(parser_state)` per token: here that is `next` on a
    generator, bound with functools.partial, so no Python function runs per call
    (the parser state lands in next's default, which a generator ending in EOFError
    never returns). Plain Lark iterates `lex`.
    """

    __slots__ = ("_tokens", "next_token")

    def __init__(self, tokens: list[object]) -> None:
        self._tokens = tokens
        self.next_token = functools.partial(next, _until_eof(tokens))

    def lex(self, _parser_state: object) -> Iterable[object]:
        return iter(self._tokens)


def _lalr_loop(lark: Lark) -> Callable[[list[object]], Any]:
    """`lark.parse` on tokens made by SmsLexer, without the layers that check the
    arguments on every call (for short texts a tenth of the time)."""
    frontend: Any = lark.parser
    lalr = frontend.parser.parser
    (start,) = frontend.parser_conf.start

    def parse(tokens: list[object]) -> Any:
        return lalr.parse(_Tokens(tokens), start)

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

    def accounts_named(self, text: str) -> tuple[str, ...]:
        """Every token of `text` shaped like an account, in order: for the reply to a text
        that could not be read, which should name the subscriber's own account."""
        if len(text) > MAX_TEXT_LENGTH:
            return ()
        self.compile()
        assert self._compiled is not None
        shown = normalise(text)
        lowered = shown.lower()
        if len(lowered) != len(shown):
            shown = lowered
        pattern = self._compiled.reader.is_account
        return tuple(
            fold_account(token.value)
            for token in cast(list[_Token], self._compiled.lexer.lex(lowered, shown).tokens)
            if token.type in ("NUMBER", "ALNUM") and pattern(token.value)
        )

    def parse(self, text: str) -> ParsedMessage:
        if len(text) > MAX_TEXT_LENGTH:
            return ParseFailure(Reason.TOO_LONG, text[:30])
        shown = normalise(text)
        if not _ALPHANUMERIC.search(shown):
            return _HELP if "?" in shown else ParseFailure(Reason.EMPTY)
        lexed_text = shown.lower()
        if len(lexed_text) != len(shown):  # "İ" lower-cases to two characters
            shown = lexed_text
        compiled = self._compiled
        if compiled is None:
            compiled = self._compiled = _compiled(self._account_pattern, self._cython)
        lexed = compiled.lexer.lex(lexed_text, shown)
        try:
            # The transformer runs inside the parser, so parse returns its result.
            result = compiled.parse(lexed.tokens)
            if isinstance(result, tuple):
                message: ParsedMessage = compiled.reader.read(result, lexed)
            else:
                message = result
        except _Failed as failed:
            fragment = _slice(shown, failed.token) if failed.token is not None else ""
            return ParseFailure(failed.reason, fragment)
        except UnexpectedToken as exc:
            return _token_failure(exc, compiled, shown)
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
    offending = exc.token
    if (
        isinstance(offending, compiled.token_class)
        and cast(_Token, offending).type == "WORD"
        and reason is not Reason.COMMAND_ARGUMENT
    ):
        # A word where a value was needed: "Т1 пять", "ЛС Иванов".
        return ParseFailure(Reason.UNKNOWN_WORD, _slice(shown, cast(_Token, offending)))
    if reason is Reason.LABEL_WITHOUT_VALUE:
        culprit = shifted[-1]
    elif reason is Reason.COMMAND_ARGUMENT:
        culprit = shifted[0]
    else:
        culprit = offending
    if isinstance(culprit, compiled.token_class):
        token = cast(_Token, culprit)
        if token.type != "$END":
            return ParseFailure(reason, _slice(shown, token))
    return ParseFailure(reason)


def _lalr_state(exc: UnexpectedToken) -> int:
    """The LALR state the parser stopped in (exc.state is the whole parser state)."""
    position: int = exc.state.position
    return position
