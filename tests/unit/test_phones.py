"""The domestic fast path of normalize_phone gives what phonenumbers gives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sms_gateway.phones import InvalidPhone, _with_phonenumbers, normalize_phone


def _slow(raw: str) -> str:
    text = raw.strip()
    if not text:
        raise InvalidPhone("empty")
    digits = "".join(ch for ch in text if ch.isdigit())
    return _with_phonenumbers(raw, text, digits, "RU")


def _outcome(function, raw: str) -> str:
    try:
        return function(raw)
    except InvalidPhone:
        return "invalid"


_SEPARATOR = st.sampled_from(["", " ", "-", "(", ")", " - ", ") ", " ("])


@st.composite
def _domestic(draw) -> str:
    """8 and ten digits, separators anywhere between them, as billing files spell them."""
    digits = "8" + "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=10, max_size=10)))
    # A tail starting 10 is Russia's international prefix (8 10 ...): must take the slow road.
    if draw(st.booleans()):
        digits = "810" + digits[3:]
    return "".join(digit + draw(_SEPARATOR) for digit in digits).strip()


@settings(max_examples=3000, deadline=None)
@given(_domestic())
def test_a_domestic_spelling_normalises_as_phonenumbers_does(raw):
    assert _outcome(_slow, raw) == _outcome(normalize_phone.__wrapped__, raw)


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="8 ()-0123456789+٨", max_size=24))
def test_any_phone_like_text_normalises_as_phonenumbers_does(raw):
    assert _outcome(_slow, raw) == _outcome(normalize_phone.__wrapped__, raw)


def test_the_usual_spellings():
    assert "+79167654321" == normalize_phone("8 (916) 765-43-21")
    assert "+79167654321" == normalize_phone("89167654321")
    # 8 10 is a call abroad: phonenumbers reads it, not the fast path.
    assert normalize_phone("8 10 49 30 1234 567").startswith("+49")
