"""The lexer: an SMS text (normalised, lower case) into the tokens sms.lark reads.

    SmsLexer.lex(lowered, shown) -> Lexed(tokens, joined, question)

A text is cut into pieces by one regular expression (words, dates, phone numbers,
"№", separators); each word is looked up in the vocabulary (vocabulary.py), and a few
rules over neighbouring pieces decide what reaches the parser:

- ignored: separators, dates, phone numbers, greetings, filler, units, a year
  ("2026 г.", "октябрь 2026"), list markers at the start of a line ("1)", "2."),
  signatures ("С уважением" and what follows, "Отправлено с iPhone" to the end of its
  line, a line that is just "--"), the digits after "тел.";
- markers: ACCOUNT_KW ("лицевой счет" and "ЛС №" are one marker), METER_KW
  ("ПУ №", "счетчик №"), SIGN ("№ 1234", "N 1234567890"), TOTAL_KW, LABEL_T1..T3
  (also "т 2", "тариф 2"), the command words;
- values: NUMBER (digits as typed), ALNUM (letters and digits mixed: an
  alphanumeric account or a garbled number); glued runs are split when every
  letter run is a label or marker ("1234567890Д5450Н2130", "пик900полупик1550");
- WORD: any word the vocabulary does not know. The parser decides where a word may
  be left out (grammar/README.md).

The lexer also reports which numbers were typed joined to the one before by a single
space or dash (an account as bills print it, "123-456-7890"), and whether the text
asks a question.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from grammar.vocabulary import Kind, Vocabulary

# The pieces of a text. A date: day, month and year with one kind of separator; a
# day and month after на/от/за; a day and a month name. A phone number: +7 or 8 and
# ten digits written in groups, or +7 and ten digits. A word: letters and digits,
# with a decimal fraction of one or two digits after its digits dropped.
_MONTHS = r"(?:январ|феврал|март|апрел|ма[йя]|июн|июл|август|сентябр|октябр|ноябр|декабр)[а-яё]*"
_YEAR_TAIL = r"(?:\s*г(?:од[а-яё]*)?\.?(?![^\W\d_]))?"
_DAY = r"(?:0?[1-9]|[12][0-9]|3[01])"
_MONTH = r"(?:0?[1-9]|1[0-2])"
_PIECES = re.compile(
    rf"""
    (?P<date>
        (?<![0-9]){_DAY}(?:\.{_MONTH}\.|/{_MONTH}/|-{_MONTH}-)(?:20)?[0-9]{{2}}(?![0-9]){_YEAR_TAIL}
      | (?<![^\W\d_])(?:на|от|за)\s*{_DAY}[./]{_MONTH}(?![0-9]|[./-][0-9])
      | (?<![0-9]){_DAY}\s*{_MONTHS}(?:\s*(?:20)?[0-9]{{2}}(?![0-9]){_YEAR_TAIL})?
    )
  | (?P<phone>
        (?<![0-9])(?:\+\s?7|8|7)[\s-]?\(?[0-9]{{3}}\)?[\s-]?[0-9]{{3}}[\s-]?[0-9]{{2}}[\s-]?[0-9]{{2}}(?![0-9])
    )
  | (?P<word>[^\W_]+)(?:(?<=[0-9])[.,][0-9]{{1,2}}(?![0-9]))?
  | (?P<sign>[№#])
  | (?P<question>\?)
  | (?P<newline>\n)
  | (?P<separator>[^\w№#?\n]+|_+)
    """,
    re.VERBOSE,
)

# Letter runs and digit runs inside a word mixing both.
_RUNS = re.compile(r"[0-9]+|[^\W\d_]+")

# One mark between two short words makes one ("л/с", "п/у"); phone groups and
# account groups are joined by these.
_COMPOUND_SEPARATORS = frozenset("/.\\-")
_PHONE_SEPARATORS = frozenset(" -()+.:\t")
_JOINERS = frozenset({" ", "-", "‐", "‑", "–"})

# Kinds a letter run glued to digits may have ("лс5550001112", "5450квт", "Д5450").
_GLUABLE = frozenset(
    {
        Kind.T1, Kind.T2, Kind.T3, Kind.TARIFF, Kind.ACCOUNT, Kind.METER, Kind.UNIT, Kind.YEAR,
        Kind.NUMBER_SIGN,
    }
)  # fmt: skip
_UNIT_ENDS = ("квт", "kw", "kvt", "вт")
_LABELS = {Kind.T1: "LABEL_T1", Kind.T2: "LABEL_T2", Kind.T3: "LABEL_T3"}
_ZONE_LABELS = {"1": "LABEL_T1", "2": "LABEL_T2", "3": "LABEL_T3"}
_COMMANDS = {
    Kind.HELP: "HELP_CMD",
    Kind.LAST: "LAST_CMD",
    Kind.REGISTER: "REG_CMD",
    Kind.STOP: "STOP_CMD",
    Kind.START: "START_CMD",
}

# A word of this many letters and then digits is a name ("iphone15"), not a garbled
# number: shorter runs of letters glued to digits are ("Д2O", "S23", "l234").
_WORD_BEFORE_DIGITS = 3

# "N" is the night label, and "N 1234567890" the sign before an account.
_SIGN_BEFORE_DIGITS = 9


@dataclass(frozen=True, slots=True)
class Piece:
    kind: str  # a group name of _PIECES
    start: int
    end: int
    text: str


@dataclass(frozen=True, slots=True)
class Lexed:
    """What the lexer found: the parser's tokens and what it noticed on the way."""

    tokens: list[object]
    joined: frozenset[int]  # start positions of numbers joined to the one before
    question: bool


class SmsLexer:
    """Turns texts into tokens of `token_class` (lark.Token or lark_cython.Token)."""

    def __init__(
        self,
        vocabulary: Vocabulary,
        account_pattern: re.Pattern[str],
        fold_account: Callable[[str], str],
        token_class: type,
    ) -> None:
        self._vocabulary = vocabulary
        self._kind_of = vocabulary.kind_of
        self._account_pattern = account_pattern
        self._fold_account = fold_account
        self._token = token_class

    @staticmethod
    def pieces(lowered: str) -> list[Piece]:
        pieces = []
        for match in _PIECES.finditer(lowered):
            kind = match.lastgroup or ""
            text = match[kind]
            end = match.end(kind)
            if kind == "phone" and text.isdigit():
                kind = "word"  # "89161234567" unbroken is a number the service may know
            pieces.append(Piece(kind, match.start(), end, text))
        return pieces

    def lex(self, lowered: str, shown: str) -> Lexed:
        pieces = self.pieces(lowered)
        out: list[tuple[str, int, int]] = []  # (type, start, end)
        joined: set[int] = set()
        question = False
        count = len(pieces)
        i = 0
        line_start = True
        while i < count:
            piece = pieces[i]
            kind = piece.kind
            if kind == "newline":
                line_start = True
                i += 1
                continue
            if kind == "separator":
                if piece.text.strip() == "--" and line_start and self._ends_line(pieces, i + 1):
                    break  # a signature follows
                i += 1
                continue
            at_line_start, line_start = line_start, False
            if kind in ("date", "phone"):
                i += 1
                continue
            if kind == "question":
                question = True
                i += 1
                continue
            if kind == "sign":
                if piece.text == "№" or self._hash_before_account(pieces, i):
                    out.append(("SIGN", piece.start, piece.end))
                i += 1  # any other "#" separates, as in "1234567833#12345678#5450"
                continue
            text = piece.text
            if text.isdigit():
                if at_line_start and self._list_marker(pieces, i):
                    i += 1
                    continue
                if self._year(pieces, i, out):
                    i += 2 if self._next_word_kind(pieces, i) is Kind.YEAR else 1
                    continue
                if self._joined(pieces, i):
                    joined.add(piece.start)
                out.append(("NUMBER", piece.start, piece.end))
                i += 1
                continue
            if not text.isalpha():
                i = self._mixed(pieces, i, out)
                continue
            # a word
            compound = self._compound(pieces, i)
            word_kind: Kind | None
            if compound is not None:
                word_kind, last = compound
                piece = Piece(
                    "word", piece.start, pieces[last].end, lowered[piece.start : pieces[last].end]
                )
                i = last
            else:
                word_kind = self._kind_of(text)
                if word_kind is None and self._followed_by(pieces, i, "."):
                    word_kind = self._vocabulary.cut_short_kind(text)
            i += 1
            if self._unit_tail(pieces, i - 1):
                continue
            if word_kind is None:
                out.append(("WORD", piece.start, piece.end))
                continue
            if self._initials(shown, pieces, i - 1):
                i += 2  # "Иванова Н.П.": initials, not labels
                continue
            if self._vocabulary.has_role("greeting_lead", piece.text):
                following = self._next_word(pieces, i)
                if following is not None and self._vocabulary.has_role(
                    "greeting_tail", pieces[following].text
                ):
                    i = following + 1
                    continue
            if word_kind in _LABELS:
                if piece.text == "n" and self._digits_follow(pieces, i, _SIGN_BEFORE_DIGITS):
                    out.append(("SIGN", piece.start, piece.end))
                elif (
                    out
                    and out[-1][0] == _LABELS[word_kind]
                    and self._adjacent(pieces, i - 1, out[-1])
                ):
                    out[-1] = (out[-1][0], out[-1][1], piece.end)  # "Т2 (ночь)": one label
                else:
                    out.append((_LABELS[word_kind], piece.start, piece.end))
            elif word_kind is Kind.ACCOUNT:
                if out and out[-1][0] == "ACCOUNT_KW" and self._adjacent(pieces, i - 1, out[-1]):
                    out[-1] = ("ACCOUNT_KW", out[-1][1], piece.end)  # "лицевой счет"
                else:
                    out.append(("ACCOUNT_KW", piece.start, piece.end))
                i = self._swallow_sign(pieces, i)
            elif word_kind is Kind.METER:
                out.append(("METER_KW", piece.start, piece.end))
                i = self._swallow_sign(pieces, i)
            elif word_kind is Kind.METER_NOUN:
                after = self._swallow_sign(pieces, i)
                if after != i:  # "счетчик № 12345678"
                    out.append(("METER_KW", piece.start, pieces[after - 1].end))
                i = after
            elif word_kind is Kind.NUMBER_SIGN:
                out.append(("SIGN", piece.start, piece.end))
            elif word_kind is Kind.TARIFF:
                following = self._next_significant(pieces, i)
                if following is not None and pieces[following].text in _ZONE_LABELS:
                    label = _ZONE_LABELS[pieces[following].text]
                    out.append((label, piece.start, pieces[following].end))
                    i = following + 1
                else:
                    out.append(("WORD", piece.start, piece.end))
            elif word_kind is Kind.TOTAL:
                out.append(("TOTAL_KW", piece.start, piece.end))
            elif word_kind is Kind.PHONE:
                i = self._skip_phone(pieces, i)
            elif word_kind is Kind.UNIT:
                following = self._next_word(pieces, i)
                if following is not None and self._vocabulary.has_role(
                    "unit_tail", pieces[following].text
                ):
                    i = following + 1
            elif word_kind is Kind.QUESTION:
                question = True
                out.append(("WORD", piece.start, piece.end))
            elif word_kind is Kind.SIGNOFF:
                break
            elif word_kind is Kind.SIGNOFF_LINE:
                # "Отправлено с iPhone", "Sent from my Galaxy S23": to the end of the line,
                # but a number there is the subscriber's, not the mail app's
                while i < count and pieces[i].kind != "newline" and not pieces[i].text.isdigit():
                    i += 1
            elif word_kind in _COMMANDS:
                out.append((_COMMANDS[word_kind], piece.start, piece.end))
            # greetings, filler, units, years, months and meter nouns carry nothing
        token = self._token
        # A word is quoted as typed; everything else is read in lower case.
        tokens = [
            token(
                type_,
                shown[start:end] if type_ == "WORD" else lowered[start:end],
                start, 1, start + 1, 1, end + 1, end,
            )
            for type_, start, end in out
        ]  # fmt: skip
        return Lexed(tokens, frozenset(joined), question)

    # -- neighbours ------------------------------------------------------------

    def _unit_tail(self, pieces: list[Piece], i: int) -> bool:
        """ "ч" in "5450кВт/ч", "900kw*h": the end of a unit glued to its number."""
        if i < 2 or not self._vocabulary.has_role("unit_tail", pieces[i].text):
            return False
        mark, before = pieces[i - 1], pieces[i - 2].text
        return mark.text in ("/", "*", "·", ".", "-") and before.endswith(_UNIT_ENDS)

    @staticmethod
    def _initials(shown: str, pieces: list[Piece], i: int) -> bool:
        """One capital, a point, one more capital and a point: a name's initials."""
        if i + 3 >= len(pieces):
            return False
        first, dot, second, last = pieces[i], pieces[i + 1], pieces[i + 2], pieces[i + 3]
        return (
            len(first.text) == 1
            and len(second.text) == 1
            and shown[first.start].isupper()
            and shown[second.start].isupper()
            and dot.text.strip() == "."
            and last.text.startswith(".")
        )

    @staticmethod
    def _next_significant(pieces: list[Piece], i: int) -> int | None:
        while i < len(pieces):
            if pieces[i].kind not in ("separator", "newline"):
                return i
            i += 1
        return None

    def _next_word(self, pieces: list[Piece], i: int) -> int | None:
        following = self._next_significant(pieces, i)
        if following is not None and pieces[following].text.isalpha():
            return following
        return None

    def _next_word_kind(self, pieces: list[Piece], i: int) -> Kind | None:
        following = self._next_word(pieces, i + 1)
        return self._kind_of(pieces[following].text) if following is not None else None

    @staticmethod
    def _followed_by(pieces: list[Piece], i: int, start: str) -> bool:
        return i + 1 < len(pieces) and pieces[i + 1].text.startswith(start)

    @staticmethod
    def _ends_line(pieces: list[Piece], i: int) -> bool:
        return i >= len(pieces) or pieces[i].kind == "newline"

    @staticmethod
    def _adjacent(pieces: list[Piece], i: int, previous: tuple[str, int, int]) -> bool:
        """Nothing but separators between the token `previous` and pieces[i]."""
        j = i - 1
        while j >= 0 and pieces[j].start >= previous[2]:
            if pieces[j].kind not in ("separator", "newline"):
                return False
            j -= 1
        return True

    def _digits_follow(self, pieces: list[Piece], i: int, at_least: int) -> bool:
        following = self._next_significant(pieces, i)
        if following is None:
            return False
        text = pieces[following].text
        return text.isdigit() and len(text) >= at_least

    def _swallow_sign(self, pieces: list[Piece], i: int) -> int:
        """Past a "№" (or "No", "номер") right after a marker: it belongs to the marker."""
        following = self._next_significant(pieces, i)
        if following is None:
            return i
        piece = pieces[following]
        if piece.kind == "sign":
            return following + 1
        if piece.text.isalpha() and self._kind_of(piece.text) is Kind.NUMBER_SIGN:
            return following + 1
        if piece.text == "n" and self._digits_follow(pieces, following + 1, _SIGN_BEFORE_DIGITS):
            return following + 1  # "лицевой счет N 1234567890"
        return i

    def _hash_before_account(self, pieces: list[Piece], i: int) -> bool:
        """ "#1234567890" at the start or after a space: the sign before an account."""
        if i > 0 and not (
            pieces[i - 1].kind in ("separator", "newline") and pieces[i - 1].text[-1:].isspace()
        ):
            return False
        following = self._next_significant(pieces, i + 1)
        return following is not None and bool(
            self._account_pattern.fullmatch(pieces[following].text)
        )

    def _joined(self, pieces: list[Piece], i: int) -> bool:
        """The number at i follows another number across one space or dash only."""
        return (
            i >= 2
            and pieces[i - 1].kind == "separator"
            and pieces[i - 1].text in _JOINERS
            and pieces[i - 2].text.isdigit()
        )

    @staticmethod
    def _list_marker(pieces: list[Piece], i: int) -> bool:
        """ "1)" or "2." at the start of a line, with more on the line: a list marker."""
        if len(pieces[i].text) > 2 or i + 2 >= len(pieces):
            return False
        mark = pieces[i + 1]
        if mark.kind != "separator":
            return False
        text = mark.text
        if not (text[0] == ")" or (text[0] == "." and text[1:2].isspace())):
            return False
        return pieces[i + 2].kind != "newline"

    def _year(self, pieces: list[Piece], i: int, out: list[tuple[str, int, int]]) -> bool:
        """A year: four digits from 1990 to 2099 after a month or before "г."/"года"."""
        text = pieces[i].text
        if len(text) != 4 or not ("1990" <= text <= "2099"):
            return False
        if self._next_word_kind(pieces, i) is Kind.YEAR:
            return True
        j = i - 1
        while j >= 0 and pieces[j].kind in ("separator", "newline"):
            j -= 1
        return j >= 0 and pieces[j].text.isalpha() and self._kind_of(pieces[j].text) is Kind.MONTH

    def _skip_phone(self, pieces: list[Piece], i: int) -> int:
        """Past the phone number after "тел.": digit groups across phone separators."""
        digits = 0
        j = i
        while j < len(pieces) and digits < 10:
            piece = pieces[j]
            if piece.kind == "phone":
                return j + 1
            if piece.kind == "separator" and set(piece.text) <= _PHONE_SEPARATORS:
                j += 1
                continue
            if piece.text.isdigit():
                digits += len(piece.text)
                j += 1
                continue
            break
        return j if digits >= 5 else i

    def _compound(self, pieces: list[Piece], i: int) -> tuple[Kind, int] | None:
        """ "л/с", "п/у", "п/п", "э/э", "пок-ния": two short words joined by one mark."""
        if i + 2 >= len(pieces):
            return None
        mark = pieces[i + 1]
        tail = pieces[i + 2]
        if mark.kind != "separator" or mark.text not in _COMPOUND_SEPARATORS:
            return None
        if not tail.text.isalpha():
            return None
        head = pieces[i].text
        if len(head) <= 3 and len(tail.text) <= 3:
            kind = self._kind_of(head + tail.text)
            if kind is not None:
                return kind, i + 2
        if mark.text == "-":
            kind = self._vocabulary.cut_short_kind(head, tail.text)
            if kind is not None and self._kind_of(head + "-" + tail.text) is None:
                return kind, i + 2
        return None

    def _mixed(self, pieces: list[Piece], i: int, out: list[tuple[str, int, int]]) -> int:
        """A word of letters and digits: split into labels, markers and numbers when every
        letter run is one; else an alphanumeric account, a garbled number or a word."""
        piece = pieces[i]
        runs = [
            (m.start() + piece.start, m.end() + piece.start, m[0])
            for m in _RUNS.finditer(piece.text)
        ]
        split = self._split(runs, piece)
        if split is not None:
            if (
                split
                and out
                and split[0][0] == out[-1][0]
                and split[0][0].startswith("LABEL")
                and self._adjacent(pieces, i, out[-1])
            ):
                out[-1] = (out[-1][0], out[-1][1], split[0][2])  # "ночь (т2)": one label
                split = split[1:]
            out.extend(split)
            return i + 1
        leading = runs[0][2]
        if self._account_pattern.fullmatch(self._fold_account(piece.text)):
            out.append(("ALNUM", piece.start, piece.end))  # "ACC123"
        elif (
            leading.isalpha()
            and len(leading) >= _WORD_BEFORE_DIGITS
            and len(runs) == 2
            and self._vocabulary.kind_of_glued(leading) is None
        ):
            out.append(("WORD", piece.start, piece.end))  # "iphone15": a word, not a number
        else:
            out.append(("ALNUM", piece.start, piece.end))  # "ACC123", or garbled: "54O0", "Д2O"
        return i + 1

    def _split(
        self, runs: list[tuple[int, int, str]], piece: Piece
    ) -> list[tuple[str, int, int]] | None:
        parts: list[tuple[str, int, int]] = []
        index = 0
        while index < len(runs):
            start, end, text = runs[index]
            index += 1
            if text.isdigit():
                parts.append(("NUMBER", start, end))
                continue
            kind = self._vocabulary.kind_of_glued(text)
            if kind not in _GLUABLE:
                return None
            if kind is Kind.TARIFF:
                # "т15450": the first digit is the zone, the rest its value
                if index >= len(runs) or runs[index][2][0] not in _ZONE_LABELS:
                    return None
                digits_start, digits_end, digits = runs[index]
                parts.append((_ZONE_LABELS[digits[0]], start, digits_start + 1))
                if len(digits) > 1:
                    parts.append(("NUMBER", digits_start + 1, digits_end))
                index += 1
            elif kind is Kind.NUMBER_SIGN or (
                text == "n" and index < len(runs) and len(runs[index][2]) >= _SIGN_BEFORE_DIGITS
            ):
                parts.append(("SIGN", start, end))  # "N1234567890", "No1234"
            elif kind in _LABELS:
                parts.append((_LABELS[kind], start, end))
            elif kind is Kind.ACCOUNT:
                following = runs[index][2] if index < len(runs) else ""
                if not (following.isdigit() and self._account_pattern.fullmatch(following)):
                    return None  # "ACC123" is an alphanumeric account (or garbled)
                parts.append(("ACCOUNT_KW", start, end))
            elif kind is Kind.METER:
                parts.append(("METER_KW", start, end))
            elif kind is Kind.YEAR:
                if not parts or parts[-1][0] != "NUMBER":
                    return None
                year = piece.text[parts[-1][1] - piece.start : parts[-1][2] - piece.start]
                if len(year) != 4 or not ("1990" <= year <= "2099"):
                    return None
                parts.pop()  # "2026г"
            # a unit carries nothing: "5450квт"
        return parts
