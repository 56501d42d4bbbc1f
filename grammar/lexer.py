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

import functools
import re
from collections.abc import Callable
from typing import NamedTuple

from grammar.vocabulary import Kind, Vocabulary

# The pieces of a text. A date: day, month and year with one kind of separator; a
# day and month after на/от/за; a day and a month name. A phone number: +7 or 8 and
# ten digits written in groups, or +7 and ten digits. A word: letters and digits,
# with a decimal fraction of one or two digits after its digits dropped.
_MONTHS = r"(?:январ|феврал|март|апрел|ма[йя]|июн|июл|август|сентябр|октябр|ноябр|декабр)[а-яё]*"
_YEAR_TAIL = r"(?:\s*г(?:од[а-яё]*)?\.?(?![^\W\d_]))?"
_DAY = r"(?:0?[1-9]|[12][0-9]|3[01])"
_MONTH = r"(?:0?[1-9]|1[0-2])"
_GAP = r"(?:[^\w№#]|_)*"
_PIECES = re.compile(
    rf"""
    (?:
        (?=[0-9ноз])(?P<date>
            (?<![0-9]){_DAY}(?:\.{_MONTH}\.|/{_MONTH}/|-{_MONTH}-)(?:20)?[0-9]{{2}}(?![0-9]){_YEAR_TAIL}
          | (?<![^\W\d_])(?:на|от|за)\s*{_DAY}[./]{_MONTH}(?![0-9]|[./-][0-9])
          | (?<![0-9]){_DAY}\s*{_MONTHS}(?:\s*(?:20)?[0-9]{{2}}(?![0-9]){_YEAR_TAIL})?
        )
      | (?=[78])(?P<phone>
            (?<![0-9])[78][\s-]?\(?[0-9]{{3}}\)?[\s-]?[0-9]{{3}}[\s-]?[0-9]{{2}}[\s-]?[0-9]{{2}}(?![0-9])
        )
      | (?P<word>[^\W_]+)(?:(?<=[0-9])[.,][0-9]{{1,2}}(?![0-9]))?
      | (?P<sign>[№#])
    )
    (?P<gap>{_GAP})
    """,
    re.VERBOSE,
)
_LEADING_GAP = re.compile(_GAP)

# A line of its own that is just "--": a signature follows.
_SIGNATURE_LINE = re.compile(r"\n[ \t\r]*--[ \t\r]*(?:\n|$)")

# Letter runs and digit runs inside a word mixing both.
_RUNS = re.compile(r"[0-9]+|[^\W\d_]+")
_LETTER_RUN = re.compile(r"[^\W\d_]+")

# One mark between two short words makes one ("л/с", "п/у"); phone groups and
# account groups are joined by these.
_COMPOUND_SEPARATORS = frozenset("/.\\-")
_PHONE_SEPARATORS = frozenset(" -()+.:\t")
_JOINERS = frozenset({" ", "-", "‐", "‑", "–"})
# Bills print an account in groups of two to four digits; longer runs are not groups.
_GROUP_DIGITS = 4

# Kinds a letter run glued to digits may have ("лс5550001112", "5450квт", "Д5450").
_GLUABLE = frozenset(
    {
        Kind.T1, Kind.T2, Kind.T3, Kind.TARIFF, Kind.ACCOUNT, Kind.METER, Kind.UNIT, Kind.YEAR,
        Kind.NUMBER_SIGN,
    }
)  # fmt: skip
_GLUED_MARKERS: dict[Kind | None, str] = {Kind.ACCOUNT: "ACCOUNT_KW", Kind.METER: "METER_KW"}
_UNIT_ENDS = ("квт", "kw", "kvt", "вт")
_UNIT_MARKS = frozenset({"/", "*", "·", ".", "-"})
# Words that carry nothing, whatever stands around them.
_NOTHING = frozenset({Kind.GREETING, Kind.FILLER, Kind.MONTH, Kind.YEAR})
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

# "счетчик 44005678: 3100": a serial after a meter noun, ended by one of these.
_SERIAL_DIGITS = 5
_SERIAL_ENDS = frozenset({":", "=", "-", "–", "—"})

# "N" is the night label, and "N 1234567890" the sign before an account.
_SIGN_BEFORE_DIGITS = 9


class Piece(NamedTuple):
    """A piece of the text and the separators after it (spaces, punctuation, newlines).

    A tuple, built by _make, and one per word rather than one more per separator:
    the lexer's cost is per piece (bench/parse.py)."""

    kind: str  # date | phone | word | sign
    start: int
    end: int
    text: str
    gap: str  # what separates it from the next piece


_piece = Piece._make
# Piece._make without its Python frame, for the loop over every piece: tuple.__new__
# builds the named tuple in C.
_new_tuple = tuple.__new__


class Lexed(NamedTuple):
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
        self._unit_tails = vocabulary.roles["unit_tail"]
        self._greeting_leads = vocabulary.roles["greeting_lead"]
        self._greeting_tails = vocabulary.roles["greeting_tail"]

    @staticmethod
    def pieces(lowered: str) -> tuple[str, list[Piece]]:
        """The separators before the first piece, and the pieces."""
        lead = _LEADING_GAP.match(lowered)
        lead_end = lead.end() if lead else 0
        pieces: list[Piece] = []
        append = pieces.append
        gap = lowered[:lead_end]
        for match in _PIECES.finditer(lowered, lead_end):
            date, phone, word, sign, after = match.groups()
            if word is not None:
                kind, text = "word", word  # without its decimal fraction
            elif date is not None:
                kind, text = "date", date
            elif phone is not None:
                kind, text = "phone", phone
                if text.isdigit() and not gap.endswith("+"):
                    kind = "word"  # "89161234567" unbroken is a number the service may know
            else:
                kind, text = "sign", sign
            start = match.start()
            gap = after
            append(_new_tuple(Piece, (kind, start, start + len(text), text, gap)))
        return lowered[:lead_end], pieces

    def lex(self, lowered: str, shown: str) -> Lexed:
        lead, pieces = self.pieces(lowered)
        out: list[tuple[str, int, int]] = []  # (type, start, end)
        joined: set[int] = set()
        question = "?" in lowered
        vocabulary = self._vocabulary
        kind_of = self._kind_of
        count = len(pieces)
        i = 0
        while i < count:
            piece = pieces[i]
            before = pieces[i - 1].gap if i else lead
            if "--" in before and _SIGNATURE_LINE.search(before if i else "\n" + before):
                break  # a signature follows
            kind = piece.kind
            if kind == "date" or kind == "phone":
                i += 1
                continue
            if kind == "sign":
                if piece.text == "№" or self._hash_before_account(pieces, i, before):
                    out.append(("SIGN", piece.start, piece.end))
                i += 1  # any other "#" separates, as in "1234567833#12345678#5450"
                continue
            text = piece.text
            if text.isdigit():
                if (i == 0 or "\n" in before) and self._list_marker(pieces, i):
                    i += 1
                    continue
                if len(text) == 4 and self._year(pieces, i):
                    i += 2 if self._word_kind(pieces, i + 1) is Kind.YEAR else 1
                    continue
                if (
                    len(text) <= _GROUP_DIGITS
                    and before in _JOINERS
                    and i
                    and pieces[i - 1].text.isdigit()
                    and len(pieces[i - 1].text) <= _GROUP_DIGITS
                ):
                    joined.add(piece.start)  # "123-456-7890": groups as bills print them
                out.append(("NUMBER", piece.start, piece.end))
                i += 1
                continue
            if not text.isalpha():
                i = self._mixed(pieces, i, out)
                continue
            # a word
            first = i
            if piece.gap in _COMPOUND_SEPARATORS and self._compound_glued(pieces, i, out):
                i += 2
                continue
            compound = self._compound(pieces, i) if piece.gap in _COMPOUND_SEPARATORS else None
            word_kind: Kind | None
            if compound is not None:
                word_kind, last = compound
                end = pieces[last].end
                piece = _piece(
                    ("word", piece.start, end, lowered[piece.start : end], pieces[last].gap)
                )
                text = piece.text
                i = last
            else:
                word_kind = kind_of(text)
                if word_kind is None and piece.gap.startswith("."):
                    word_kind = vocabulary.cut_short_kind(text)
            i += 1
            if text in self._unit_tails and self._unit_tail(pieces, first):
                continue
            if word_kind is None:
                out.append(("WORD", piece.start, piece.end))
                continue
            if len(text) == 1 and self._initials(shown, pieces, first):
                i += 1  # "Иванова Н.П.": initials, not labels
                continue
            if (
                text in self._greeting_leads
                and i < count
                and pieces[i].text in self._greeting_tails
            ):
                i += 1  # "добрый день", "спокойной ночи"
                continue
            if word_kind in _NOTHING:
                continue  # the commonest words: greetings and filler
            if word_kind in _LABELS:
                label = _LABELS[word_kind]
                if text == "n" and self._digits_follow(pieces, i, _SIGN_BEFORE_DIGITS):
                    out.append(("SIGN", piece.start, piece.end))
                elif out and out[-1][0] == label and self._adjacent(pieces, first, out[-1]):
                    out[-1] = (label, out[-1][1], piece.end)  # "Т2 (ночь)": one label
                else:
                    out.append((label, piece.start, piece.end))
            elif word_kind is Kind.ACCOUNT:
                if out and out[-1][0] == "ACCOUNT_KW" and self._adjacent(pieces, first, out[-1]):
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
                elif self._serial_named(pieces, i):  # "счетчик 44005678: 3100"
                    out.append(("METER_KW", piece.start, piece.end))
                i = after
            elif word_kind is Kind.NUMBER_SIGN:
                out.append(("SIGN", piece.start, piece.end))
            elif word_kind is Kind.TARIFF:
                if i < count and pieces[i].text in _ZONE_LABELS:
                    out.append((_ZONE_LABELS[pieces[i].text], piece.start, pieces[i].end))
                    i += 1
                else:
                    out.append(("WORD", piece.start, piece.end))
            elif word_kind is Kind.TOTAL:
                out.append(("TOTAL_KW", piece.start, piece.end))
            elif word_kind is Kind.PHONE:
                i = self._skip_phone(pieces, i)
            elif word_kind is Kind.UNIT:
                if i < count and pieces[i].text in self._unit_tails:
                    i += 1
            elif word_kind is Kind.QUESTION:
                question = True
                out.append(("WORD", piece.start, piece.end))
            elif word_kind is Kind.SIGNOFF:
                break
            elif word_kind is Kind.SIGNOFF_LINE:
                # "Отправлено с iPhone", "Sent from my Galaxy S23": to the end of the line,
                # but a number there is the subscriber's, not the mail app's
                while i < count and "\n" not in pieces[i - 1].gap and not pieces[i].text.isdigit():
                    i += 1
            elif word_kind in _COMMANDS:
                out.append((_COMMANDS[word_kind], piece.start, piece.end))
            # units and meter nouns without their tail or sign carry nothing
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

    # -- neighbours: pieces[i] and the gaps around it --------------------------

    def _unit_tail(self, pieces: list[Piece], i: int) -> bool:
        """ "ч" in "5450кВт/ч", "900kw*h": the end of a unit glued to its number."""
        if i < 1:
            return False
        before = pieces[i - 1]
        return before.gap in _UNIT_MARKS and before.text.endswith(_UNIT_ENDS)

    @staticmethod
    def _initials(shown: str, pieces: list[Piece], i: int) -> bool:
        """One capital, a point, one more capital and a point: a name's initials."""
        if i + 1 >= len(pieces):
            return False
        first, second = pieces[i], pieces[i + 1]
        return (
            len(second.text) == 1
            and shown[first.start].isupper()
            and shown[second.start].isupper()
            and first.gap.strip() == "."
            and second.gap.startswith(".")
        )

    def _word_kind(self, pieces: list[Piece], i: int) -> Kind | None:
        """The kind of pieces[i] when it is a word."""
        if i < len(pieces) and pieces[i].text.isalpha():
            return self._kind_of(pieces[i].text)
        return None

    @staticmethod
    def _adjacent(pieces: list[Piece], i: int, previous: tuple[str, int, int]) -> bool:
        """Nothing but separators between the token `previous` and pieces[i]."""
        return i > 0 and pieces[i - 1].end == previous[2]

    @staticmethod
    def _digits_follow(pieces: list[Piece], i: int, at_least: int) -> bool:
        return i < len(pieces) and pieces[i].text.isdigit() and len(pieces[i].text) >= at_least

    def _swallow_sign(self, pieces: list[Piece], i: int) -> int:
        """Past a "№" (or "No", "N") right after a marker: it belongs to the marker."""
        if i >= len(pieces):
            return i
        piece = pieces[i]
        if piece.kind == "sign":
            return i + 1
        if piece.text.isalpha() and self._kind_of(piece.text) is Kind.NUMBER_SIGN:
            return i + 1
        if piece.text == "n" and self._digits_follow(pieces, i + 1, _SIGN_BEFORE_DIGITS):
            return i + 1  # "лицевой счет N 1234567890"
        return i

    @staticmethod
    def _serial_named(pieces: list[Piece], i: int) -> bool:
        """After a meter noun, a number of serial length and then ":", "=" or a dash before
        more: the number names the meter, it is not its reading ("счетчик 5450" is)."""
        if i + 1 >= len(pieces):
            return False
        serial = pieces[i]
        return (
            serial.text.isdigit()
            and len(serial.text) >= _SERIAL_DIGITS
            and serial.gap.strip() in _SERIAL_ENDS
        )

    def _hash_before_account(self, pieces: list[Piece], i: int, before: str) -> bool:
        """ "#1234567890" at the start or after a space: the sign before an account."""
        if i > 0 and not before[-1:].isspace():
            return False
        return i + 1 < len(pieces) and bool(self._account_pattern.fullmatch(pieces[i + 1].text))

    @staticmethod
    def _list_marker(pieces: list[Piece], i: int) -> bool:
        """ "1)" or "2." at the start of a line, with more on the line: a list marker."""
        piece = pieces[i]
        gap = piece.gap
        if len(piece.text) > 2 or i + 1 >= len(pieces) or not gap or "\n" in gap:
            return False
        return gap[0] == ")" or (gap[0] == "." and gap[1:2].isspace())

    def _year(self, pieces: list[Piece], i: int) -> bool:
        """A year: four digits from 1990 to 2099 after a month or before "г."/"года"."""
        text = pieces[i].text
        if not ("1990" <= text <= "2099"):
            return False
        if self._word_kind(pieces, i + 1) is Kind.YEAR:
            return True
        return i > 0 and self._word_kind(pieces, i - 1) is Kind.MONTH

    def _skip_phone(self, pieces: list[Piece], i: int) -> int:
        """Past the phone number after "тел.": digit groups across phone separators."""
        digits = 0
        j = i
        while j < len(pieces) and digits < 10 and set(pieces[j - 1].gap) <= _PHONE_SEPARATORS:
            piece = pieces[j]
            if piece.kind == "phone":
                return j + 1
            if not piece.text.isdigit():
                break
            digits += len(piece.text)
            j += 1
        return j if digits >= 5 else i

    def _compound(self, pieces: list[Piece], i: int) -> tuple[Kind, int] | None:
        """ "л/с", "п/у", "п/п", "э/э", "пок-ния": two short words joined by one mark."""
        if i + 1 >= len(pieces):
            return None
        mark = pieces[i].gap
        tail = pieces[i + 1].text
        if not tail.isalpha():
            return None
        head = pieces[i].text
        if len(head) <= 3 and len(tail) <= 3:
            kind = self._kind_of(head + tail)
            if kind is not None:
                return kind, i + 1
        if mark == "-":
            kind = self._vocabulary.cut_short_kind(head, tail)
            if kind is not None and self._kind_of(head + "-" + tail) is None:
                return kind, i + 1
        return None

    def _compound_glued(self, pieces: list[Piece], i: int, out: list[tuple[str, int, int]]) -> bool:
        """ "л/с1234567890", "п/у12345678": a compound marker glued to its number."""
        if i + 1 >= len(pieces):
            return False
        head, tail = pieces[i].text, pieces[i + 1]
        leading = _LETTER_RUN.match(tail.text)
        letters = leading.end() if leading else 0
        if not (len(head) <= 3 and 0 < letters <= 3 and tail.text[letters:].isdigit()):
            return False
        marker = _GLUED_MARKERS.get(self._kind_of(head + tail.text[:letters]))
        if marker is None:
            return False
        out.append((marker, pieces[i].start, tail.start + letters))
        out.append(("NUMBER", tail.start + letters, tail.end))
        return True

    def _mixed(self, pieces: list[Piece], i: int, out: list[tuple[str, int, int]]) -> int:
        """A word of letters and digits: its parts (see `_glued`), placed in the text."""
        piece = pieces[i]
        offset = piece.start
        split = [
            (type_, start + offset, end + offset) for type_, start, end in self._glued(piece.text)
        ]
        if (
            out
            and split
            and split[0][0] == out[-1][0]
            and split[0][0].startswith("LABEL")
            and self._adjacent(pieces, i, out[-1])
        ):
            out[-1] = (out[-1][0], out[-1][1], split[0][2])  # "ночь (т2)": one label
            split = split[1:]
        out.extend(split)
        return i + 1

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one lexer per account pattern
    def _glued(self, text: str) -> tuple[tuple[str, int, int], ...]:
        """A word of letters and digits split into labels, markers and numbers when every
        letter run is one ("Д5450", "т1", "лс5550001112"); else one alphanumeric token (an
        account or a garbled number) or a word. Offsets are within the word; cached,
        because "т1" and "кВт" come again and again."""
        runs = [(m.start(), m.end(), m[0]) for m in _RUNS.finditer(text)]
        split = self._split(runs, text)
        if split is not None:
            return tuple(split)
        leading = runs[0][2]
        whole = (0, len(text))
        if self._account_pattern.fullmatch(self._fold_account(text)):
            return (("ALNUM", *whole),)  # "ACC123"
        if (
            leading.isalpha()
            and len(leading) >= _WORD_BEFORE_DIGITS
            and len(runs) == 2
            and self._vocabulary.kind_of_glued(leading) is None
        ):
            return (("WORD", *whole),)  # "iphone15": a word, not a number
        return (("ALNUM", *whole),)  # garbled: "54O0", "Д2O"

    def _split(
        self, runs: list[tuple[int, int, str]], word: str
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
                year = word[parts[-1][1] : parts[-1][2]]
                if len(year) != 4 or not ("1990" <= year <= "2099"):
                    return None
                parts.pop()  # "2026г"
            # a unit carries nothing: "5450квт"
        return parts
