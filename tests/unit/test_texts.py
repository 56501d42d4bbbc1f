"""The CLI's words (sms_gateway/texts.py): both languages fill the same placeholders,
and numbers are written as each language writes them."""

from __future__ import annotations

import dataclasses
import string

import pytest

from sms_gateway.texts import EN, RU, CliTexts, cli_texts


def _placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def _templates(texts: CliTexts) -> dict[str, str]:
    out: dict[str, str] = {}
    for field in dataclasses.fields(texts):
        value = getattr(texts, field.name)
        if isinstance(value, tuple):
            out.update({f"{field.name}[{i}]": item for i, item in enumerate(value)})
        elif isinstance(value, str):
            out[field.name] = value
    return out


def test_russian_and_english_fill_the_same_placeholders():
    """A template whose placeholders differ between the languages would fail (KeyError)
    or drop a number only in that language."""
    russian, english = _templates(RU), _templates(EN)
    assert russian.keys() == english.keys()
    differ = {
        name: (_placeholders(russian[name]), _placeholders(english[name]))
        for name in russian
        if _placeholders(russian[name]) != _placeholders(english[name])
    }
    assert {} == differ


@pytest.mark.parametrize(
    ("texts", "number", "decimal", "share"),
    [(RU, "1 234 567", "1 234,5", "12,5 %"), (EN, "1,234,567", "1,234.5", "12.5 %")],
)
def test_numbers_as_each_language_writes_them(texts, number, decimal, share):
    assert (number, decimal, share, "10 %") == (
        texts.number(1_234_567),
        texts.decimal(1234.54),
        texts.share(0.125),
        texts.share(0.1),
    )


def test_the_locale_picks_the_words_russian_by_default():
    assert (RU, EN, RU) == (cli_texts("ru"), cli_texts("en"), cli_texts("fr"))
