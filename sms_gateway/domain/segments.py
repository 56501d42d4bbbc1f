"""How many SMS segments a text takes: GSM 03.38 when it fits the alphabet, else UCS-2."""

from __future__ import annotations

# GSM 03.38 default alphabet and the extension table (each extension character
# costs two septets: the escape and the character).
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = frozenset("\f^{}\\[~]|€")

SINGLE_GSM = 160
PART_GSM = 153
SINGLE_UCS2 = 70
PART_UCS2 = 67


_GSM_ALL = GSM_BASIC | GSM_EXTENSION


def fits_gsm(text: str) -> bool:
    return _GSM_ALL.issuperset(text)


def gsm_septets(text: str) -> int:
    return len(text) + sum(text.count(ch) for ch in GSM_EXTENSION)


def ucs2_units(text: str) -> int:
    """UTF-16 code units: characters outside the BMP take a surrogate pair (a lone
    surrogate counts one: the SMPP encoder sends "?" in its place, never raises)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _packed_parts(sizes: list[int], part: int) -> int:
    """Parts of at most `part` units, filled in order, no character cut in two."""
    parts, used = 1, 0
    for size in sizes:
        if used + size > part:
            parts, used = parts + 1, 0
        used += size
    return parts


def segment_count(text: str) -> int:
    """Segments the text needs as one SMS (concatenated with UDH when long).

    Counted as the SMPP encoder splits: a GSM escape pair or a UTF-16 surrogate pair
    never straddles two parts, so such a character at a boundary opens the next part.
    """
    gsm = fits_gsm(text)
    if gsm:
        length, single, part = gsm_septets(text), SINGLE_GSM, PART_GSM
    else:
        length, single, part = ucs2_units(text), SINGLE_UCS2, PART_UCS2
    if length <= single:
        return 1
    if length == len(text):  # every character one unit: nothing to keep whole
        return -(-length // part)
    if gsm:
        sizes = [2 if ch in GSM_EXTENSION else 1 for ch in text]
    else:
        sizes = [2 if ch > "\uffff" else 1 for ch in text]
    return _packed_parts(sizes, part)
