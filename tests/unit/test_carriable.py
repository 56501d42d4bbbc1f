"""Replies are always carriable: whatever a subscriber types, the reply that quotes it is
well-formed TwiML, goes over SMPP in GSM 03.38 or UCS-2 as composed, and keeps within
its segment budget.

The subscriber's text goes through the real parser; replies are composed for every
outcome from what it read; then the Twilio writer and the SMPP encoder take them.
"""

from __future__ import annotations

import unicodedata
import xml.dom.minidom
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import date
from itertools import pairwise

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from adapters.smpp.codec import (
    DCS_DEFAULT,
    DCS_UCS2,
    ESM_UDHI,
    carriable,
    encode_reply,
)
from adapters.twilio.messages import _twiml_slow, twiml_replies, twiml_reply, xml_safe
from grammar import MessageParser
from sms_gateway.domain.model import Meter, Outcome, PreviousReading, Zone
from sms_gateway.domain.parsed import ParseFailure, ParseFailureReason
from sms_gateway.domain.replies import (
    ReplyContext,
    compose_replies,
    compose_reply,
    quoted,
    segment_budget,
)
from sms_gateway.domain.rules import Decision
from sms_gateway.domain.segments import GSM_BASIC, GSM_EXTENSION, segment_count
from tests.unit.grammar_cases import ACCOUNT_PATTERN

CALLBACK = "https://sms.example.ru/gw/twilio/status?reply=17&x=<&y=\"'"
TWO_ZONE = Meter("1234567833", "44005678", zones=2, digits=5, id=1)
DECISION = Decision(
    Outcome.ACCEPTED,
    period="2026-11",
    values=(5450, 2130),
    consumption=(50, 30),
    previous=PreviousReading((5400, 2100), date(2026, 10, 20)),
    offending_zone=Zone.T2,
    days=31,
)
# Categories no reply may hold: they are invisible, unshowable, or not characters.
UNSHOWABLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})

_parser = MessageParser(ACCOUNT_PATTERN)
_parser.parse("0")  # build the grammar now, not inside the first hypothesis example


def _twiml_messages(twiml: str) -> list[str]:
    """The <Message> texts of a TwiML document, read by two XML parsers."""
    root = ET.fromstring(twiml.encode("utf-8"))
    texts = [message.text or "" for message in root.iter("Message")]
    document = xml.dom.minidom.parseString(twiml.encode("utf-8"))
    assert texts == [
        "".join(node.data for node in message.childNodes if isinstance(node, xml.dom.minidom.Text))
        for message in document.getElementsByTagName("Message")
    ]
    return texts


def _as_read(text: str) -> str:
    """What an XML parser reads for text content: line ends normalised (XML 1.0 §2.11)."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _smpp_read_back(text: str) -> tuple[str, int, int]:
    """(the text a handset reads, data_coding, parts) of the encoded reply."""
    encoded = encode_reply(text, 7)
    bodies = [b[6:] if encoded.esm_class & ESM_UDHI else b for b in encoded.bodies]
    # 140 octets of UCS-2, or 160 GSM septets one to an octet (the SMSC packs them).
    limit = 140 if encoded.data_coding == DCS_UCS2 else 160
    assert all(len(body) <= limit for body in encoded.bodies)
    # Each part on its own: a surrogate pair or escape sequence cut in two would not decode.
    codec = "gsm03.38" if encoded.data_coding == DCS_DEFAULT else "utf-16-be"
    read = "".join(body.decode(codec) for body in bodies)
    return read, encoded.data_coding, len(encoded.bodies)


def _assert_carriable(reply: str, budget: int) -> None:
    """The reply holds nothing unshowable, reads back as composed from TwiML and from
    the SMPP bodies, and keeps within `budget` segments by both counts."""
    assert reply and reply == reply.strip()
    assert [] == [ch for ch in reply if unicodedata.category(ch) in UNSHOWABLE], reply
    assert segment_count(reply) <= budget, reply
    for twiml in (twiml_reply(reply, CALLBACK), twiml_reply(reply)):
        assert [reply] == _twiml_messages(twiml)
    assert [reply, reply] == _twiml_messages(twiml_replies([(reply, CALLBACK), (reply, None)]))
    read, data_coding, parts = _smpp_read_back(reply)
    assert reply == read
    assert data_coding in (DCS_DEFAULT, DCS_UCS2)
    assert parts <= budget, reply


# ---- quoting: what is kept, dropped or shown as "?" ------------------------------------


@pytest.mark.parametrize(
    ("fragment", "expected"),
    [
        ("т\x1c1", "т 1"),  # the case: a file separator between label and digit
        ("т\x0b1\x0c2\x1d3\x1e4\x1f5", "т 1 2 3 4 5"),
        ("a\t\n\r\x85\u00a0\u2028\u3000b", "a b"),  # any whitespace run: one space
        ("\x1c\x1dТ1\x1e", "Т1"),  # none left at either end
        ("a\x00b\x07c\x1bd\x7fe\x9bf", "abcdef"),  # other controls: dropped
        ("a\u200bb\u200dc\u202ed\u00ade\ufeff", "abcde"),  # format characters: dropped
        ("a\ue000b\U000f0000c", "a?b?c"),  # private use
        ("a\u0378b\ufffec\U000e0fffd", "a?b?c?d"),  # unassigned and non-characters
        ("a\ud800b\udfffc", "a?b?c"),  # lone surrogates
        ("a\ud83d\ude00b", "a\U0001f600b"),  # a surrogate pair is one character
        ("\u0301\u0301abc", "abc"),  # a mark with nothing to sit on
        ("a\x1c\u0301b\x1c\u0301", "a b"),  # nor on a space
        ("Иванов", "Иванов"),
    ],
)
def test_quoted_fragment_is_cleaned(fragment: str, expected: str) -> None:
    """Whitespace controls become one space, other controls and format characters are
    dropped, private-use, unassigned and lone surrogate code points become "?"."""
    assert expected == quoted(fragment, 20)


@pytest.mark.parametrize(
    ("fragment", "limit", "expected"),
    [
        ("абвгдежзийклмнопрстуфх", 20, "абвгдежзийклмнопрсту"),
        ("e\u0301" * 10, 8, "e\u0301" * 8),  # a letter keeps its accent
        ("a\u0301\u0302\u0303\u0304b", 8, "a\u0301\u0302b"),  # at most two marks each
        ("\U0001f44d\U0001f3fd" * 5, 3, "\U0001f44d\U0001f3fd" * 3),  # skin tone kept
        ("\U0001f1f7\U0001f1fa" * 5, 2, "\U0001f1f7\U0001f1fa" * 2),  # flags stay pairs
        ("\U0001f600" * 30, 8, "\U0001f600" * 8),  # astral characters count one each
        ("ab\x1c" * 10, 3, "ab"),  # no space left at the end of the cut
    ],
)
def test_quoted_fragment_is_cut_between_characters(
    fragment: str, limit: int, expected: str
) -> None:
    """A quote holds at most `limit` characters as a phone draws them, never part of one."""
    assert expected == quoted(fragment, limit)


# ---- replies to texts with control characters -----------------------------------------


@pytest.mark.parametrize("separator", ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f"])
@pytest.mark.parametrize("prefix", ["", "1234567833 "])
def test_label_typed_with_a_control_character_is_quoted_without_it(
    prefix: str, separator: str
) -> None:
    """`т<U+001C>1` reads as a label without a value; the reply quotes it with a plain
    space and goes through both transports as composed."""
    parsed = _parser.parse(f"{prefix}т{separator}1")
    assert ParseFailure(ParseFailureReason.LABEL_WITHOUT_VALUE, f"т{separator}1") == parsed
    ctx = ReplyContext(Outcome.UNPARSED, failure=parsed)
    reply = compose_reply(ctx)
    assert (
        "После «т 1» нет показания. Отправьте ЛС и показания: 1234567833 5450. "
        "Справка: ПОМОЩЬ" == reply
    )
    assert "No reading after “т 1”. Send account and reading: 1234567833 5450. Help: HELP" == (
        compose_reply(ctx, "en")
    )
    _assert_carriable(reply, segment_budget(Outcome.UNPARSED))


@pytest.mark.parametrize(
    ("reason", "ru", "en"),
    [
        (ParseFailureReason.UNKNOWN_WORD, "Непонятное слово.", "Unknown word."),
        (
            ParseFailureReason.LABEL_WITHOUT_VALUE,
            "После зоны нет показания.",
            "No reading after a zone label.",
        ),
        (
            ParseFailureReason.GARBLED_NUMBER,
            "В числе есть буква.",
            "There is a letter in a number.",
        ),
        (ParseFailureReason.REPEATED_ZONE, "Зона указана дважды.", "A zone is given twice."),
        (
            ParseFailureReason.COMMAND_ARGUMENT,
            "Не хватает данных для команды.",
            "The command needs more.",
        ),
    ],
)
@pytest.mark.parametrize("fragment", ["", "\u200b\u200d", "\x00\x01\x1b"])
def test_nothing_left_to_quote_reads_without_quotes(
    reason: ParseFailureReason, ru: str, en: str, fragment: str
) -> None:
    """A fragment that cleaning leaves empty (or none at all) gives the wording without
    a quote, never "«»"."""
    ctx = ReplyContext(Outcome.UNPARSED, failure=ParseFailure(reason, fragment))
    assert f"{ru} Отправьте ЛС и показания: 1234567833 5450. Справка: ПОМОЩЬ" == (
        compose_reply(ctx)
    )
    assert f"{en} Send account and reading: 1234567833 5450. Help: HELP" == (
        compose_reply(ctx, "en")
    )


def test_meter_reference_is_cleaned_too() -> None:
    """The meter digits of REG are quoted cleaned; none left reads without a gap."""
    ctx = ReplyContext(
        Outcome.UNKNOWN_METER, account="1234567833", meter_reference="56\x1c78", command=None
    )
    assert compose_reply(ctx).startswith("Счётчик 56 78 не найден у ЛС 1234567833.")
    ctx = replace(ctx, meter_reference="\x1c\u200b")
    assert compose_reply(ctx).startswith("Счётчик не найден у ЛС 1234567833.")


# ---- the transports: every code point -------------------------------------------------

# Every code point, 4096 to a text: one test run covers each category (controls,
# surrogates, private use, unassigned, non-characters, the placeholders U+E000/U+E001).
# High and low surrogates go in separate texts: U+DBFF next to U+DC00 would be a pair.
_BOUNDS = sorted({*range(0, 0x110001, 0x1000), 0xDC00})
_BLOCKS = ["".join(map(chr, range(start, end))) for start, end in pairwise(_BOUNDS)]


def _xml_char(ch: str) -> bool:
    """XML 1.0's Char production."""
    code = ord(ch)
    return (
        code in (0x9, 0xA, 0xD)
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


def test_xml_safe_keeps_exactly_what_xml_can_hold() -> None:
    """Every code point XML 1.0 allows stays as it is; every other one becomes "?"."""
    for block in _BLOCKS:
        expected = "".join(ch if _xml_char(ch) else "?" for ch in block)
        assert expected == xml_safe(block)


def test_twiml_is_well_formed_for_every_code_point() -> None:
    """Whatever the text, the TwiML parses, and its message is the text with what XML
    cannot hold as "?"; the fast path writes what MessagingResponse writes."""
    for block in _BLOCKS:
        expected = _as_read(xml_safe(block))
        with_action = twiml_reply(block, CALLBACK)
        assert _twiml_slow(block, CALLBACK) == with_action
        assert [expected] == _twiml_messages(with_action)
        assert [expected] == _twiml_messages(twiml_reply(block))
        assert [expected, expected] == _twiml_messages(
            twiml_replies([(block, CALLBACK), (block, None)])
        )


@pytest.mark.parametrize(
    "text",
    ["\ue000", "\ue001", "a\ue001b\ue000c", "\ue000\ue000", "&lt;\ue000&amp;", "\ue001\ud800"],
)
@pytest.mark.parametrize("callback", [None, CALLBACK, "https://x/\ue000?a=\ue001"])
def test_placeholders_in_the_text_or_url_come_out_as_typed(text: str, callback: str | None) -> None:
    """U+E000 and U+E001 (the fast path's placeholders) in a reply or in the status URL
    are written as themselves, and nothing else moves."""
    twiml = twiml_reply(text, callback)
    assert _twiml_slow(text, callback) == twiml
    assert [xml_safe(text)] == _twiml_messages(twiml)
    if callback is not None:
        root = ET.fromstring(twiml.encode("utf-8"))
        assert [callback] == [m.get("action") for m in root.iter("Message")]


_GSM = GSM_BASIC | GSM_EXTENSION


def test_smpp_encoder_carries_every_code_point_or_sends_a_question_mark() -> None:
    """No text makes encode_reply raise; a handset reads back the text with only what
    GSM 03.38 or UCS-2 (UTF-16 pairs for the astral planes) carries, the rest as "?"."""
    for block in _BLOCKS:
        read, data_coding, _ = _smpp_read_back(block)
        assert carriable(block) == read
        assert (DCS_DEFAULT if _GSM.issuperset(read) else DCS_UCS2) == data_coding
        assert len(block) == len(read)  # one for one: nothing dropped, nothing split
        for ch, sent in zip(block, read, strict=True):
            control = unicodedata.category(ch) == "Cc" and ch not in "\n\r"
            if control or unicodedata.category(ch) == "Cs" or ch in "\ufffe\uffff":
                assert "?" == sent
            else:
                assert ch == sent


@pytest.mark.parametrize(
    ("text", "expected", "data_coding"),
    [
        ("abc\x1c\x00\x1bdef", "abc???def", DCS_DEFAULT),  # GSM once the controls are gone
        ("Ж\x1c\x85", "Ж??", DCS_UCS2),
        ("a\ud800", "a?", DCS_DEFAULT),  # a lone surrogate never reaches the codec
        ("Ж\ud83d\ude00", "Ж\U0001f600", DCS_UCS2),  # a pair as two code points: joined
        ("\ufeffЖ\ufffe", "\ufeffЖ?", DCS_UCS2),
        ("line\nbreak\r", "line\nbreak\r", DCS_DEFAULT),
    ],
)
def test_smpp_encoder_replaces_what_no_coding_carries(
    text: str, expected: str, data_coding: int
) -> None:
    assert (expected, data_coding) == _smpp_read_back(text)[:2]


_SPLIT_ALPHABET = "aZ09 ?€^{}[]Жё\U0001f600\U0001f44d"


@given(st.text(st.sampled_from(_SPLIT_ALPHABET), max_size=400))
@example("Ж" * 66 + "\U0001f600" + "Ж" * 66)  # 134 units, yet three parts
@example("a" * 152 + "€" + "a" * 152)  # 306 septets, yet three parts
def test_segment_count_is_the_number_of_parts_the_encoder_sends(text: str) -> None:
    """The budget counts parts as the encoder cuts them: a surrogate pair or a GSM
    escape at a part boundary opens the next part in both."""
    assert len(encode_reply(text, 1).bodies) == segment_count(text)


# ---- the property: any text in, carriable replies out --------------------------------

# Pieces that lead the parser to quote: labels, words, garbled numbers, commands.
_PIECES = ["Т1", "т", "Т2", "1", "5450", "1234567833", "ЛС", "ПУ", "день", "REG", "РЕГ",
           "ИНФО", "12З4", "пять", "Иванов", "№", "?"]  # fmt: skip
_ANY_CHARACTER = st.characters(exclude_categories=())  # surrogates included
_SEPARATORS = [" ", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\u2028", "\t"]
_texts = st.one_of(
    st.text(_ANY_CHARACTER, max_size=60),
    st.lists(
        st.one_of(
            st.sampled_from(_PIECES),
            st.sampled_from(_SEPARATORS),
            st.text(_ANY_CHARACTER, min_size=1, max_size=4),
        ),
        max_size=14,
    ).map("".join),
)


def _contexts_for(text: str) -> list[ReplyContext]:
    """A context per outcome, each holding what the parser read from `text`."""
    parsed = _parser.parse(text)
    failure = parsed if isinstance(parsed, ParseFailure) else None
    base = ReplyContext(
        Outcome.UNPARSED,
        account="1234567833",
        meter=TWO_ZONE,
        meters=(TWO_ZONE,),
        decision=DECISION,
        failure=failure,
        # The service passes digits; here the whole text, to try the worst.
        meter_reference=text,
        last_period="2026-10",
        last_values=(5450, 2130),
    )
    return [replace(base, outcome=outcome) for outcome in Outcome] + [
        replace(base, account=None, meters=(), meter=None)
    ]


@settings(max_examples=400, deadline=None)
@given(text=_texts, locale=st.sampled_from(["ru", "en"]))
def test_any_text_gets_carriable_replies(text: str, locale: str) -> None:
    """Whatever the subscriber types, every reply that may quote it holds nothing
    unshowable, is well-formed TwiML, reads back whole from its SMPP parts in GSM 03.38
    or UCS-2, and keeps within its segment budget; also several parts in one reply."""
    contexts = _contexts_for(text)
    for ctx in contexts:
        _assert_carriable(compose_reply(ctx, locale), segment_budget(ctx.outcome))
    several = [
        replace(contexts[0], account="1234567833"),
        replace(contexts[0], account="5432109876", outcome=Outcome.UNKNOWN_METER),
        replace(contexts[0], account="1111111111", outcome=Outcome.UNKNOWN_ACCOUNT),
    ]
    for reply in compose_replies(several, locale):
        _assert_carriable(reply, 2)
