"""encode_reply: every reply reads back as sent, in parts an SMSC accepts."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from adapters.smpp.codec import DCS_DEFAULT, DCS_UCS2, ESM_UDHI, encode_reply

GSM_TEXT = "@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCXYZÄÖÑÜ§¿abcxyzäöñüà"
GSM_EXTENSION = "^{}\\[~]|€"
CYRILLIC = "Приняты показания ЛС Т1 Т2 ночь день ёЁ"
ASTRAL = "😀👍🏽"

texts = st.text(
    alphabet=st.sampled_from(GSM_TEXT + GSM_EXTENSION + CYRILLIC + ASTRAL), max_size=700
)


def _read_back(text_bytes: list[bytes], data_coding: int) -> str:
    joined = b"".join(text_bytes)
    return joined.decode("gsm03.38" if data_coding == DCS_DEFAULT else "utf-16-be")


@given(texts, st.integers(0, 255))
def test_reply_reads_back_whole_from_its_parts(text: str, reference: int) -> None:
    encoded = encode_reply(text, reference)
    if encoded.esm_class & ESM_UDHI:
        headers = [body[:6] for body in encoded.bodies]
        payloads = [body[6:] for body in encoded.bodies]
        total = len(encoded.bodies)
        assert total > 1
        assert headers == [bytes((5, 0, 3, reference, total, n)) for n in range(1, total + 1)]
    else:
        payloads = list(encoded.bodies)
        assert len(payloads) == 1
    # Every part decodes on its own to its share of the text: no escape sequence or
    # surrogate pair is cut between two parts.
    assert "".join(_read_back([p], encoded.data_coding) for p in payloads) == text
    # 140 octets of UCS-2, or 160 GSM septets one to an octet (the SMSC packs them).
    limit = 140 if encoded.data_coding == DCS_UCS2 else 160
    assert all(len(body) <= limit for body in encoded.bodies)


@given(texts)
def test_gsm_exactly_when_every_character_fits_the_alphabet(text: str) -> None:
    fits = all(c in GSM_TEXT + GSM_EXTENSION for c in text)
    assert encode_reply(text, 1).data_coding == (DCS_DEFAULT if fits else DCS_UCS2)


def test_one_sms_holds_160_gsm_characters_or_70_ucs2_ones() -> None:
    assert len(encode_reply("x" * 160, 1).bodies) == 1
    assert len(encode_reply("x" * 161, 1).bodies) == 2
    assert len(encode_reply("€" * 80, 1).bodies) == 1  # two septets each
    assert len(encode_reply("Ж" * 70, 1).bodies) == 1
    assert len(encode_reply("Ж" * 71, 1).bodies) == 2


def test_a_lone_surrogate_goes_as_a_question_mark() -> None:
    """UTF-16 cannot encode a lone surrogate: it is sent as "?" instead of raising,
    and a pair written as two code points goes as the one character it stands for."""
    assert (DCS_UCS2, (b"\x04\x16\x00?",)) == _coding_and_bodies("Ж\udc00")
    assert (DCS_DEFAULT, (b"a?",)) == _coding_and_bodies("a\ud800")
    assert (DCS_UCS2, ("Ж\U0001f600".encode("utf-16-be"),)) == _coding_and_bodies("Ж\ud83d\ude00")


def _coding_and_bodies(text: str) -> tuple[int, tuple[bytes, ...]]:
    encoded = encode_reply(text, 1)
    return encoded.data_coding, encoded.bodies
