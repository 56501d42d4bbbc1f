"""Phone numbers: any usual Russian or E.164 spelling in, E.164 out, masked for logs."""

from __future__ import annotations

import functools

import phonenumbers


class InvalidPhone(ValueError):
    """Not a phone number we can route a reply to."""


# phonenumbers takes tens of microseconds; a cache entry about 250 bytes. Subscribers
# repeat within minutes (a confirmation, a correction), not across the month, so a
# small cache catches the repeats without growing to a phone book (issue 12: 65,536
# entries of this and the next cache held 46 MB).
_SEPARATORS = " ()-"


@functools.lru_cache(maxsize=8192)
def normalize_phone(raw: str, region: str = "RU") -> str:
    """`8 (916) 123-45-67`, `79161234567`, `+7 916 123 45 67` -> `+79161234567`.

    Raises InvalidPhone for text that is not a possible phone number.
    """
    text = raw.strip()
    if not text:
        raise InvalidPhone("empty phone number")
    digits = "".join(ch for ch in text if ch.isdigit())
    # The domestic spelling billing files are full of, 8 (916) 123-45-67, without
    # phonenumbers (80 µs each: a quarter of a million-row import's check). Only
    # separators besides the digits, and not 8 10..., Russia's international prefix,
    # which phonenumbers reads as a call abroad. Proved equal by a property test.
    if (
        region == "RU"
        and len(digits) == 11
        and digits[0] == "8"
        and not digits.startswith("810")
        and text[0] == "8"
        and text.strip(_SEPARATORS + "0123456789") == ""
    ):
        return "+7" + digits[1:]
    return _with_phonenumbers(raw, text, digits, region)


def _with_phonenumbers(raw: str, text: str, digits: str, region: str) -> str:
    # SMSCs and Twilio send international numbers without '+' (79161234567);
    # a bare 11-digit number starting with 7 is the Russian +7 form, and with 8
    # the domestic trunk form.
    if not text.startswith("+") and len(digits) == 11 and digits[0] == "7":
        text = "+" + digits
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(f"not a phone number: {raw!r}") from exc
    if not phonenumbers.is_possible_number(number):
        raise InvalidPhone(f"not a possible phone number: {raw!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def mask_phone(phone: str | None) -> str:
    """`+79161234567` -> `+7916***4567`: enough to tell numbers apart, not to dial them."""
    if not phone:
        return ""
    if len(phone) <= 6:
        return "*" * len(phone)
    head = 5 if len(phone) > 9 else 2
    return phone[:head] + "*" * (len(phone) - head - 4) + phone[-4:]


def own_phone_spellings(phone: str) -> frozenset[str]:
    """How a subscriber may type their own number in a text, digits only:
    `+79161234567` -> 79161234567, 89161234567, 9161234567. Other countries: the
    international digits."""
    digits = phone.lstrip("+")
    if not digits.isdigit():
        return frozenset()
    if len(digits) == 11 and digits[0] == "7":
        return frozenset({digits, "8" + digits[1:], digits[1:]})
    return frozenset({digits})
