"""The metamorphic properties through the whole gateway, on SQLite and PostgreSQL.

tests/unit/test_grammar_metamorphic.py proves them for the parser with thousands of
hypothesis examples. Here every case of the real-shaped table that books something is
sent again with noise a subscriber adds (greetings, names, phones, dates, filler,
emoji, line breaks, a signature) around it and after its account, through the real
composition root: it must book exactly what the clean text books. And whatever any
text books, each booked number stands in that text (after digit-script folding;
with its red digits, when the reply says they were dropped).
"""

from __future__ import annotations

import random
import re
from dataclasses import replace

from grammar.parser import normalise
from tests.integration.test_real_shaped import NOW, RULES, Case, load_cases, prepare, run_case
from tests.unit.test_grammar_metamorphic import _NOISE, _SIGNATURES

# Generated once per run from this seed: a failure names the noisy text, which is
# all one needs to reproduce it.
SEED = 20261202
VARIANTS_PER_CASE = 2
_ACCOUNT_FIRST = re.compile(r"^(?:ЛС )?\d{10,12}(?= \S)")
_DIGIT_RUN = re.compile(r"\d+")
# "Т15450": the zone's digit glued to its reading.
_TARIFF_GLUED = re.compile(r"(?<![^\W\d_])[тt][1-3](\d+)", re.IGNORECASE)
_LIST_MARKER = re.compile(r"^\d\W")


def noisy(text: str, rng: random.Random) -> str:
    """`text` with noise before it, after it, after a leading account, and maybe a
    signature: never between two numbers, where a word may tell them apart."""
    before = " ".join(rng.sample(_NOISE, rng.randint(0, 2)))
    after = " ".join(rng.sample(_NOISE, rng.randint(0, 2)))
    lead = _ACCOUNT_FIRST.match(text)
    if lead and rng.random() < 0.5:
        text = f"{text[: lead.end()]} {rng.choice(_NOISE)} {text[lead.end() :]}"
    signature = rng.choice(["", "", *_SIGNATURES])
    # A numbered list starts a line: noise before it stands on a line of its own.
    between = "\n" if _LIST_MARKER.match(text) else " "
    return f"{before}{between}{text} {after}{signature}"


def booking_cases() -> list[Case]:
    """The table's cases that book something: the valid messages."""
    return [c for c in load_cases() if c.book and c.gap is None]


def numbers_in(text: str) -> list[str]:
    """The numbers of a text, as values: digit runs, and readings glued to "Т1"."""
    folded = normalise(text)
    runs = _DIGIT_RUN.findall(folded) + _TARIFF_GLUED.findall(folded)
    return [run.lstrip("0") or "0" for run in runs]


async def test_noise_never_changes_what_the_gateway_books(
    db_url, settings_for, gateway_factory, clock, capsys
):
    assert clock() == NOW
    gateway = await gateway_factory(settings_for(db_url, rules=RULES), demo=False)
    await prepare(gateway, clock)
    rng = random.Random(SEED)
    problems = []
    sent = 0
    for case in booking_cases():
        for _ in range(VARIANTS_PER_CASE):
            variant = replace(case, text=noisy(case.text, rng))
            result = await run_case(gateway, clock, variant)
            sent += 1
            if result.problems:
                problems.append(f"{variant.text!r}: {result.problems}, booked {result.booked}")
            for _account, _serial, values in result.booked:
                for value in values:
                    runs = numbers_in(variant.text)
                    red = "красных" in (result.reply or "")
                    if str(value) not in runs and not (
                        red and any(run.startswith(str(value)) for run in runs)
                    ):
                        problems.append(f"{variant.text!r}: booked {value}, not in the text")
    capsys.readouterr()
    assert sent >= 500
    assert not problems, "\n".join(problems)
