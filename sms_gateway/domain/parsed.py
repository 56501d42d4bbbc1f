"""What the grammar read in an SMS, before the account and meter are known.

The grammar package produces these; the service resolves them against the
database. They carry strings for account-like tokens so leading zeros survive.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sms_gateway.domain.model import Zone


class Command(enum.StrEnum):
    HELP = "help"  # HELP, ПОМОЩЬ, СПРАВКА, ?, 0
    LAST = "last"  # LAST/ПОСЛЕДНИЕ/ИНФО <account>
    REGISTER = "register"  # REG/РЕГ <account> <last 4 digits of a meter serial>
    STOP = "stop"  # STOP/СТОП
    START = "start"  # START/СТАРТ


class ParseFailureReason(enum.StrEnum):
    """Why a text could not be read; each reason has a subscriber-facing hint."""

    EMPTY = "empty"  # nothing but spaces and punctuation
    NO_READINGS = "no_readings"  # words only, or an account without any reading
    GARBLED_NUMBER = "garbled_number"  # letters inside a number: 12З4, 1O5
    UNKNOWN_WORD = "unknown_word"  # a word that is neither a keyword, a label nor noise
    LABEL_WITHOUT_VALUE = "label_without_value"  # "Т1 Т2 2130"
    REPEATED_ZONE = "repeated_zone"  # "Т1 5450 Т1 2130"
    MIXED_LABELS = "mixed_labels"  # labelled and unlabelled readings after the account
    COMMAND_ARGUMENT = "command_argument"  # "REG" without account or meter digits
    TOO_LONG = "too_long"  # more text than any reading message needs
    AMBIGUOUS = "ambiguous"  # the text can be read two ways: which number is the account


@dataclass(frozen=True, slots=True)
class ParsedReadings:
    """A readings message (or one part of a message that names several accounts or meters).

    numbers: bare numbers in order of appearance, as typed (fractions dropped, leading
        zeros kept), including the account when the account was a bare number.
    labelled: values introduced by a zone label (Т1, день, Н ...), in order, as typed.
    account_hint: a token the sender marked as the account (after ЛС, счет, ACC, № ...)
        or an alphanumeric token matching the account pattern; canonical form
        (upper-case, look-alike letters folded to Latin).
    meter_hint: digits the sender marked as a meter (after ПУ, счетчик №, № ...).
    total: a value after "итого"/"сумма": what the meter shows in all, not a zone.
    breaks: (i, word): an unknown word stood between numbers[i - 1] and numbers[i].
        Left out it would put two numbers side by side that the word kept apart
        ("5450 прошлый 5300"): the service refuses when both are readings.
    joins: (i, j): numbers[i:j] were typed joined by single spaces or dashes, as bills
        print an account ("123-456-7890"); the service may read them as one account.
    """

    numbers: tuple[str, ...] = ()
    labelled: tuple[tuple[Zone, str], ...] = ()
    account_hint: str | None = None
    meter_hint: str | None = None
    total: str | None = None
    breaks: tuple[tuple[int, str], ...] = ()
    joins: tuple[tuple[int, int], ...] = ()

    @property
    def has_values(self) -> bool:
        return bool(self.numbers or self.labelled or self.total)


def account_spans(
    numbers: Sequence[str], joins: Sequence[tuple[int, int]], pattern: re.Pattern[str]
) -> Iterator[tuple[int, int, str]]:
    """(first, last, joined) for every run numbers[first:last] of two groups or more,
    within a joined run, whose digits together fit the account pattern; the longest
    run from each group first ("123-456-7890" -> "1234567890")."""
    for start, end in joins:
        for first in range(start, end - 1):
            for last in range(end, first + 1, -1):
                joined = "".join(numbers[first:last])
                if pattern.fullmatch(joined):
                    yield first, last, joined


@dataclass(frozen=True, slots=True)
class SeveralReadings:
    """One SMS with readings for several accounts or several meters, in order.

    A part that names no account belongs to the account of the part before it
    ("ПУ 44005678 3100 ПУ 44009999 7100 3100"); each part is decided on its own.
    """

    parts: tuple[ParsedReadings, ...]


@dataclass(frozen=True, slots=True)
class ParsedCommand:
    command: Command
    account: str | None = None
    argument: str | None = None


@dataclass(frozen=True, slots=True)
class ParseFailure:
    reason: ParseFailureReason
    fragment: str = ""  # the part of the text the reason is about, for logs and replies


ParsedMessage = ParsedReadings | SeveralReadings | ParsedCommand | ParseFailure
