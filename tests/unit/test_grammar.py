"""The SMS grammar against a table of what subscribers actually type."""

from __future__ import annotations

import re

import pytest

from grammar import MessageParser
from grammar import parser as grammar_parser
from sms_gateway.domain.parsed import ParsedMessage, ParseFailure, ParseFailureReason
from tests.unit.grammar_cases import ACCOUNT_PATTERN, CASES


@pytest.fixture(scope="module")
def message_parser() -> MessageParser:
    return MessageParser(ACCOUNT_PATTERN)


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[repr(text)[:60] for text, _ in CASES])
def test_message(message_parser: MessageParser, text: str, expected: ParsedMessage) -> None:
    """Each text of the table parses to exactly the expected message."""
    assert expected == message_parser.parse(text)


def test_table_is_large_and_unique() -> None:
    """The table covers well over a hundred distinct texts."""
    texts = [text for text, _ in CASES]
    assert len(texts) > 100
    assert len(texts) == len(set(texts))


def test_parser_is_built_lazily() -> None:
    """Constructing a MessageParser compiles no grammar; the first parse does, once."""
    built = grammar_parser._compiled.cache_info
    before = built().currsize
    message_parser = MessageParser(r"\d{7}")
    assert before == built().currsize
    message_parser.parse("1234567 5450")
    message_parser.parse("1234567 5451")
    assert before + 1 == built().currsize


def test_compile_builds_the_parser_ahead_of_the_first_message() -> None:
    """The gateway compiles at start-up (bootstrap), so no subscriber waits for it."""
    built = grammar_parser._compiled.cache_info
    before = built()
    message_parser = MessageParser(r"\d{8}")
    message_parser.compile()
    after_compile = built()
    assert (before.currsize + 1, before.misses + 1) == (
        after_compile.currsize,
        after_compile.misses,
    )
    message_parser.parse("12345678 5450")
    assert after_compile == built()


def test_account_pattern_decides_alphanumeric_accounts() -> None:
    """A token is an account only when the configured pattern fullmatches it."""
    digits_only = MessageParser(r"\d{10}")
    assert ParseFailure(ParseFailureReason.GARBLED_NUMBER, "ACC123") == digits_only.parse(
        "ACC123 45678"
    )


def test_error_examples_label_distinct_states() -> None:
    """Every error example stops the parser in a state labelled with its own reason."""
    compiled = grammar_parser._compiled(ACCOUNT_PATTERN)
    assert set(compiled.reason_by_state.values()) == set(grammar_parser._ERROR_EXAMPLES)


def test_bad_account_pattern_is_refused_at_construction() -> None:
    """A broken account pattern is a configuration error, not a parse failure."""
    with pytest.raises(re.error):
        MessageParser(r"(\d{10}")


def test_lark_cython_is_the_default_engine() -> None:
    """MessageParser reads with lark-cython unless told otherwise."""
    import lark_cython

    assert lark_cython.Token is grammar_parser._compiled(ACCOUNT_PATTERN).token_class


def test_plain_lark_reads_the_table_alike() -> None:
    """Plain Lark, the fallback without lark-cython, reads every text of the table the same."""
    plain_lark = MessageParser(ACCOUNT_PATTERN, cython=False)
    assert [expected for _, expected in CASES] == [plain_lark.parse(text) for text, _ in CASES]
