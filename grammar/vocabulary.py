"""The words the grammar knows, read from vocabulary.toml, and how a typed word finds one.

    Vocabulary.kind_of(word)
      1. as written                       "показания", "лс", "ночь"
      2. a stem and any ending            "дневной", "ноября"
      3. look-alike letters swapped       "нoчь" (Latin o), "dаy" (Cyrillic а)
      4. typed on the other layout        "gjrfpfybz" -> "показания"
      5. spelled by ear                   "щет", "счот", "лецевой" (ё/е, й/и, щ/сч, о/а)
      6. one typo, two in long words      "поазания", "показния", "полупк"
    Vocabulary.cut_short_kind(word)       "показан." "лицев." "пок-ния"

Steps 5 and 6 never yield a command: a typo must not turn a word into STOP. The data
lives in the TOML file, so a newcomer extends the vocabulary without touching code.
"""

from __future__ import annotations

import enum
import functools
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources


class Kind(enum.StrEnum):
    """What a known word does in a text (the section names of vocabulary.toml)."""

    HELP = "help"
    LAST = "last"
    REGISTER = "register"
    STOP = "stop"
    START = "start"
    ACCOUNT = "account"
    METER = "meter"
    NUMBER_SIGN = "number_sign"
    METER_NOUN = "meter_noun"
    T1 = "t1"
    T2 = "t2"
    T3 = "t3"
    TARIFF = "tariff"
    TOTAL = "total"
    PHONE = "phone"
    YEAR = "year"
    UNIT = "unit"
    GREETING = "greeting"
    FILLER = "filler"
    MONTH = "month"
    QUESTION = "question"
    SIGNOFF = "signoff"
    SIGNOFF_LINE = "signoff_line"


COMMANDS = frozenset({Kind.HELP, Kind.LAST, Kind.REGISTER, Kind.STOP, Kind.START})

# Roles: word lists that may overlap the kinds (see vocabulary.toml).
_ROLES = ("unit_tail", "greeting_lead", "greeting_tail")

# Lower-case Latin letters that look like Cyrillic ones, and back.
_LATIN_TO_CYRILLIC = str.maketrans("aceopxykmhtb", "асеорхукмнтв")
_CYRILLIC_TO_LATIN = str.maketrans("асеорхукмнтв", "aceopxykmhtb")

# The Russian letters on the keys of the US layout (ЙЦУКЕН under QWERTY).
_KEYBOARD = str.maketrans("qwertyuiop[]asdfghjkl;'zxcvbnm,.`", "йцукенгшщзхъфывапролджэячсмитьбюё")

# Spellings by ear, both sides of the comparison folded the same way.
_BY_EAR = str.maketrans({"ё": "е", "й": "и", "ъ": "ь", "о": "а", "щ": "сч"})

# Typical endings, so that a typo in an adjective is found: "дневнй", "полупиковыи".
_ENDINGS = ("", "ой", "ая", "ое", "ый", "ые", "ий", "ого", "ую", "ых")

_MIN_FUZZY = 4  # shorter words are too close to other words to guess
_LONG_WORD = 8  # from here two typos are forgiven
_MIN_CUT = 3  # "пок." is the shortest cut-short form worth reading
_MIN_GUESS = 3  # a letter or two typed on the other layout or by ear is anybody's guess


def _is_cyrillic(char: str) -> bool:
    return "а" <= char <= "я" or char == "ё"


def _is_latin(char: str) -> bool:
    return "a" <= char <= "z"


def osa_distance(left: str, right: str, limit: int) -> int:
    """Edits (insert, delete, substitute, swap two neighbours) from left to right,
    or limit + 1 once it is known to exceed `limit`."""
    if abs(len(left) - len(right)) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(right) + 1))
    for i, a in enumerate(left, start=1):
        current = [i] + [0] * len(right)
        for j, b in enumerate(right, start=1):
            cost = 0 if a == b else 1
            value = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a == right[j - 2] and left[i - 2] == b:
                value = min(value, previous2[j - 2] + 1)
            current[j] = value
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return previous[-1]


def _deletions(word: str, depth: int) -> set[str]:
    found = {word}
    frontier = {word}
    for _ in range(depth):
        frontier = {w[:i] + w[i + 1 :] for w in frontier for i in range(len(w))}
        found |= frontier
    return found


@dataclass(frozen=True, slots=True)
class _Entry:
    word: str  # folded by ear
    kind: Kind
    max_edits: int


class Vocabulary:
    """Word lists by kind; answers what a typed word is, or None for an unknown word."""

    def __init__(self, sections: Mapping[str, Mapping[str, object]]) -> None:
        self._words: dict[str, Kind] = {}
        self._stems: list[tuple[str, Kind]] = []
        self.roles: dict[str, frozenset[str]] = {}
        problems: list[str] = []
        for name, section in sections.items():
            words = _strings(section.get("words", []))
            if section.get("role"):
                self.roles[name] = frozenset(words)
                continue
            try:
                kind = Kind(name)
            except ValueError:
                problems.append(f"[{name}] is no kind the grammar knows")
                continue
            for word in words:
                known = self._words.setdefault(word, kind)
                if known is not kind:
                    problems.append(f"{word!r} is both {known} and {kind}")
            for stem in _strings(section.get("stems", [])):
                self._stems.append((stem, kind))
        for role in _ROLES:
            self.roles.setdefault(role, frozenset())
        if problems:
            raise ValueError("vocabulary.toml: " + "; ".join(problems))
        self._by_ear: dict[str, Kind | None] = {}
        for word, kind in self._words.items():
            if kind not in COMMANDS:
                self._add_by_ear(word.translate(_BY_EAR), kind)
        self._fuzzy_index: dict[str, list[_Entry]] = {}
        self._prefixes: list[tuple[str, Kind]] = []
        for word in self._fuzzy_words():
            found = self.kind_of_exact(word)
            if found is None or found in COMMANDS:
                continue
            kind = found
            self._prefixes.append((word, kind))
            folded = word.translate(_BY_EAR)
            if len(folded) < _MIN_FUZZY:
                continue
            edits = 2 if len(folded) >= _LONG_WORD else 1
            entry = _Entry(folded, kind, edits)
            for deleted in _deletions(folded, edits):
                self._fuzzy_index.setdefault(deleted, []).append(entry)

    def _add_by_ear(self, folded: str, kind: Kind) -> None:
        known = self._by_ear.setdefault(folded, kind)
        if known is not None and known is not kind:
            self._by_ear[folded] = None  # two kinds spell alike by ear: neither is guessed

    def _fuzzy_words(self) -> Iterable[str]:
        yield from self._words
        for stem, _kind in self._stems:
            for ending in _ENDINGS:
                yield stem + ending

    @classmethod
    @functools.cache
    def default(cls) -> Vocabulary:
        text = resources.files("grammar").joinpath("vocabulary.toml").read_text("utf-8")
        return cls(tomllib.loads(text))

    def has_role(self, role: str, word: str) -> bool:
        return word in self.roles[role]

    @functools.lru_cache(maxsize=1024)  # noqa: B019 - one Vocabulary per process
    def kind_of_glued(self, word: str) -> Kind | None:
        """A letter run glued to digits ("Д5450", "лс5550001112"): as written or with
        look-alike letters swapped, never guessed, since a garbled digit is a letter too."""
        kind = self.kind_of_exact(word)
        if kind is None:
            kind = self.kind_of_exact(word.translate(_LATIN_TO_CYRILLIC))
        if kind is None:
            kind = self.kind_of_exact(word.translate(_CYRILLIC_TO_LATIN))
        return kind

    def kind_of_exact(self, word: str) -> Kind | None:
        """Steps 1 and 2: the word as written, or a stem with an ending."""
        kind = self._words.get(word)
        if kind is not None:
            return kind
        for stem, stem_kind in self._stems:
            if word.startswith(stem) and (len(word) == len(stem) or word[len(stem) :].isalpha()):
                return stem_kind
        return None

    @functools.lru_cache(maxsize=8192)  # noqa: B019 - one Vocabulary per process
    def kind_of(self, word: str) -> Kind | None:
        """What `word` (lower case, letters only) is, or None when it is unknown."""
        kind = self.kind_of_exact(word)
        if kind is not None:
            return kind
        has_cyrillic = any(_is_cyrillic(c) for c in word)
        has_latin = any(_is_latin(c) for c in word)
        candidates: list[str] = []
        if has_cyrillic and has_latin:
            candidates += [word.translate(_LATIN_TO_CYRILLIC), word.translate(_CYRILLIC_TO_LATIN)]
        for candidate in candidates:
            kind = self.kind_of_exact(candidate)
            if kind is not None:
                return kind
        if len(word) < _MIN_GUESS:
            return None
        if has_latin and not has_cyrillic:
            typed = word.translate(_KEYBOARD)
            kind = self.kind_of_exact(typed)
            if kind is not None and kind not in COMMANDS:
                return kind
            candidates.append(typed)
        elif not candidates:
            candidates.append(word)
        for candidate in candidates:
            kind = self._guess(candidate)
            if kind is not None:
                return kind
        return None

    def _guess(self, word: str) -> Kind | None:
        """Steps 5 and 6: spelled by ear, then within the typos forgiven; never a command."""
        folded = word.translate(_BY_EAR)
        kind = self._by_ear.get(folded)
        if kind is not None:
            return kind
        if len(folded) < _MIN_FUZZY:
            return None
        kinds: set[Kind] = set()
        depth = 2 if len(folded) >= _LONG_WORD - 1 else 1
        for deleted in _deletions(folded, depth):
            for entry in self._fuzzy_index.get(deleted, ()):
                if entry.kind in kinds:
                    continue
                if osa_distance(folded, entry.word, entry.max_edits) <= entry.max_edits:
                    kinds.add(entry.kind)
        return kinds.pop() if len(kinds) == 1 else None

    @functools.lru_cache(maxsize=1024)  # noqa: B019 - one Vocabulary per process
    def cut_short_kind(self, head: str, tail: str = "") -> Kind | None:
        """A word cut short before "." ("показан.") or with its middle left out before
        "-" ("пок-ния"): the kind when every word it can stand for is of one kind."""
        if len(head) < _MIN_CUT:
            return None
        kinds = {
            kind
            for word, kind in self._prefixes
            if len(word) > len(head) + len(tail) and word.startswith(head) and word.endswith(tail)
        }
        return kinds.pop() if len(kinds) == 1 else None


def _strings(value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"vocabulary.toml: expected a list of words, got {value!r}")
    return [item.lower() for item in value]
