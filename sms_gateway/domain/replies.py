"""Every reply the gateway sends, in Russian and English, in one place.

A confirmation must fit one SMS segment (70 UCS-2 characters for Russian); an error
or an answer to a command must fit two. Each template is a list of variants from
the most to the least wordy; the first that fits its budget is sent.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date

from sms_gateway.domain.model import Meter, Outcome, Zone
from sms_gateway.domain.parsed import Command, ParseFailure, ParseFailureReason
from sms_gateway.domain.rules import Decision
from sms_gateway.domain.segments import segment_count

ONE_SEGMENT = 1
TWO_SEGMENTS = 2

# Outcomes whose reply must fit in a single segment; the rest may take two.
_SINGLE_SEGMENT = frozenset(
    {
        Outcome.ACCEPTED,
        Outcome.ACCEPTED_NEXT_PERIOD,
        Outcome.CORRECTED,
        Outcome.CONFIRMED,
        Outcome.DUPLICATE,
        Outcome.OPTED_OUT,
        Outcome.OPTED_IN,
        Outcome.RATE_LIMITED,
    }
)


def segment_budget(outcome: Outcome) -> int:
    return ONE_SEGMENT if outcome in _SINGLE_SEGMENT else TWO_SEGMENTS


@dataclass(frozen=True, slots=True)
class ReplyContext:
    """Everything a reply template may mention."""

    outcome: Outcome
    account: str | None = None
    meter: Meter | None = None
    meters: tuple[Meter, ...] = ()
    decision: Decision | None = None
    failure: ParseFailure | None = None
    meter_reference: str | None = None
    last_period: str | None = None
    last_values: tuple[int, ...] | None = None
    # LAST: billing's reading is newer than any booked here (another channel's).
    last_read_on: date | None = None
    last_from_billing: bool = False
    window_start_day: int = 15
    window_end_day: int = 25
    # unknown_account: billing closed the account (or all its meters); not a typo.
    account_closed: bool = False
    # Where to turn when SMS cannot serve ([gateway] contact); empty: the bill's phone.
    contact: str = ""
    # The command being answered, where the reply is about a command (LAST, REG).
    command: Command | None = None
    # Meter serials are shown only to phones linked to the account: they are what
    # REG asks for, so a stranger must not learn them from an error reply.
    reveal_meters: bool = False
    # The typed value had more digits than the register: the red digits were left out.
    red_digits_dropped: bool = False
    # One part of a reply to an SMS with several accounts or meters (compose_replies).
    several: bool = False
    # Another part is about another meter of the same account: name this one's meter.
    name_meter: bool = False


_LABELS = {"ru": ("Т1", "Т2", "Т3"), "en": ("T1", "T2", "T3")}
_MONTHS = {
    "ru": (
        "январь", "февраль", "март", "апрель", "май", "июнь",
        "июль", "август", "сентябрь", "октябрь", "ноябрь", "декабрь",
    ),
    "en": (
        "January", "February", "March", "April", "May", "June",
        "July", "August", "September", "October", "November", "December",
    ),
}  # fmt: skip
_EXAMPLE_ACCOUNT = "1234567833"
_ACCOUNT_WORD = {"ru": "ЛС", "en": "Account"}
_HIDDEN_DIGITS = {"ru": "ХХХХ", "en": "XXXX"}


def _month(period: str | None, locale: str) -> str:
    if not period:
        return ""
    return _MONTHS[locale][int(period[5:7]) - 1]


def _values(
    ctx_values: Sequence[int], locale: str, consumption: Sequence[int] | None, compact: bool = False
) -> str:
    labels = _LABELS[locale]
    parts = []
    for index, value in enumerate(ctx_values):
        label = labels[index] if len(ctx_values) > 1 else labels[0]
        if consumption is None:
            parts.append(f"{label} {value}")
        elif compact:
            parts.append(f"{label} {value}(+{consumption[index]})")
        else:
            parts.append(f"{label} {value} (+{consumption[index]})")
    return (" " if compact else ", ").join(parts)


def _hint(ctx: ReplyContext, locale: str) -> str:
    """What to send, shaped for the account's own meter where it is known."""
    account = ctx.account or _EXAMPLE_ACCOUNT
    meter = ctx.meter or (ctx.meters[0] if len(ctx.meters) == 1 else None)
    zones = meter.zones if meter else 1
    meter_part = ""
    if meter is None and len(ctx.meters) > 1:
        digits = ctx.meters[0].serial[-4:] if ctx.reveal_meters else _HIDDEN_DIGITS[locale]
        meter_part = f" ПУ {digits}" if locale == "ru" else f" M {digits}"
        zones = ctx.meters[0].zones
    if zones == 1:
        reading = "5450" if ctx.meter is None and not ctx.meters else "..."
        return f"{account}{meter_part} {reading}"
    labels = _LABELS[locale][:zones]
    return f"{account}{meter_part} " + " ".join(f"{label} ..." for label in labels)


def _who(ctx: ReplyContext, locale: str) -> str:
    """The account, and its meter where another part of the reply is about another."""
    if ctx.name_meter and ctx.meter is not None:
        meter = "ПУ" if locale == "ru" else "meter"
        return f"{ctx.account} {meter} {ctx.meter.serial[-4:]}"
    return f"{ctx.account}"


# The texts an outcome may say, wordiest first.
Variants = Callable[[ReplyContext, str], Iterable[str]]


def _accepted(ctx: ReplyContext, locale: str) -> Iterator[str]:
    # Wordiest first, each built only if the one before did not fit: most replies are
    # this outcome's first variant (the texts were a tenth of the batch writer's time).
    d = ctx.decision
    assert d is not None
    acc = _who(ctx, locale)
    if locale == "en":
        if ctx.red_digits_dropped:
            values = _values(d.values, locale, d.consumption, compact=True)
            yield f"Accepted without the red digits, {acc}: {values}"
        lead = {
            Outcome.ACCEPTED: "Reading accepted",
            Outcome.CORRECTED: "Reading corrected",
            Outcome.CONFIRMED: "Reading confirmed",
            Outcome.ACCEPTED_NEXT_PERIOD: f"Accepted for {_month(d.period, locale)}",
        }[ctx.outcome]
        yield f"{lead}, account {acc}: {_values(d.values, locale, d.consumption)}."
        yield f"{lead}, {acc}: {_values(d.values, locale, d.consumption, compact=True)}"
        yield f"OK {acc}: {_values(d.values, locale, d.consumption, compact=True)}"
        yield f"OK {acc}: {_values(d.values, locale, None)}"
        return
    lead = {
        Outcome.ACCEPTED: "Приняты показания",
        Outcome.CORRECTED: "Исправлены показания",
        Outcome.CONFIRMED: "Подтверждены показания",
        Outcome.ACCEPTED_NEXT_PERIOD: f"Приняты в счёт за {_month(d.period, locale)}",
    }[ctx.outcome]
    if ctx.red_digits_dropped:
        values = _values(d.values, locale, d.consumption, compact=True)
        yield f"{lead} ЛС {acc} без красных цифр: {values}"
        yield f"Приняты без красных цифр ЛС {acc}: {values}"
        yield f"Без красных цифр {acc}: {_values(d.values, locale, None)}"
    yield f"{lead} ЛС {acc}: {_values(d.values, locale, d.consumption)}."
    yield f"{lead} ЛС {acc}: {_values(d.values, locale, d.consumption, compact=True)}"
    short = {
        Outcome.ACCEPTED: "Приняты",
        Outcome.CORRECTED: "Исправлены",
        Outcome.CONFIRMED: "Подтверждены",
        Outcome.ACCEPTED_NEXT_PERIOD: f"За {_month(d.period, locale)}",
    }[ctx.outcome]
    yield f"{short} ЛС {acc}: {_values(d.values, locale, d.consumption, compact=True)}"
    total = f", расход {sum(d.consumption)}" if d.consumption else ""
    yield f"{short} {acc}: {_values(d.values, locale, None)}{total}"
    yield f"{short} {acc}: {_values(d.values, locale, None)}"


def _duplicate(ctx: ReplyContext, locale: str) -> list[str]:
    d = ctx.decision
    assert d is not None
    acc = _who(ctx, locale)
    if locale == "en":
        return [
            f"Already accepted, account {acc}: {_values(d.values, locale, None)}.",
            f"Already accepted: {_values(d.values, locale, None)}",
        ]
    return [
        f"Эти показания ЛС {acc} уже приняты: {_values(d.values, locale, None)}.",
        f"Уже приняты ЛС {acc}: {_values(d.values, locale, None)}",
        f"Уже приняты: {_values(d.values, locale, None)}",
    ]


def _confirm_needed(ctx: ReplyContext, locale: str) -> list[str]:
    d = ctx.decision
    assert d is not None and d.consumption is not None
    total, days = sum(d.consumption), d.days or 1
    if locale == "en":
        return [
            f"Account {ctx.account}: {total} kWh in {days} days is unusually high. "
            "If the reading is right, send the same message again.",
        ]
    return [
        f"ЛС {ctx.account}: расход {total} кВт·ч за {days} дн. — необычно много. "
        "Если показания верны, отправьте это же сообщение ещё раз.",
        f"ЛС {ctx.account}: расход {total} кВт·ч за {days} дн. Если верно, отправьте ещё раз.",
    ]


def _help(ctx: ReplyContext, locale: str) -> list[str]:
    if locale == "en":
        return [
            "Send your account and reading: 1234567833 5450. Two zones: "
            "1234567833 T1 5450 T2 2130. Last reading: LAST 1234567833. Stop confirmations: STOP",
        ]
    return [
        "Отправьте ЛС и показания: 1234567833 5450. Два тарифа: 1234567833 Т1 5450 Т2 2130. "
        "Последние: ИНФО 1234567833. Без ответов: СТОП",
    ]


def _last_reading(ctx: ReplyContext, locale: str) -> list[str]:
    if ctx.last_values is not None and ctx.last_from_billing and ctx.last_read_on is not None:
        values = _values(ctx.last_values, locale, None)
        when = ctx.last_read_on.strftime("%d.%m.%Y")
        if locale == "en":
            return [f"Account {ctx.account}, last reading (billing, {when}): {values}."]
        return [
            f"ЛС {ctx.account}, последние показания по данным расчётного центра "
            f"на {when}: {values}.",
            f"ЛС {ctx.account}, по данным расчётного центра на {when}: {values}",
            f"ЛС {ctx.account}, {when}: {values}",
        ]
    if ctx.last_values is None:
        if locale == "en":
            return [f"No readings yet for account {ctx.account}. Send: {_hint(ctx, locale)}"]
        return [f"По ЛС {ctx.account} показаний ещё нет. Отправьте: {_hint(ctx, locale)}"]
    values = _values(ctx.last_values, locale, None)
    month = _month(ctx.last_period, locale)
    year = (ctx.last_period or "")[:4]
    if locale == "en":
        return [f"Account {ctx.account}, last reading ({month} {year}): {values}."]
    return [
        f"ЛС {ctx.account}, последние показания (за {month} {year}): {values}.",
        f"ЛС {ctx.account}, {ctx.last_period}: {values}",
    ]


def _simple(ru: str, en: str) -> Variants:
    def variants(ctx: ReplyContext, locale: str) -> list[str]:
        template = en if locale == "en" else ru
        return [template.format(account=ctx.account, hint=_hint(ctx, locale))]

    return variants


_FAILURE_TEXT = {
    "ru": {
        ParseFailureReason.EMPTY: "Сообщение пустое.",
        ParseFailureReason.NO_READINGS: "Не нашли показаний.",
        ParseFailureReason.GARBLED_NUMBER: "В числе «{fragment}» есть буква.",
        ParseFailureReason.UNKNOWN_WORD: "Непонятно слово «{fragment}».",
        ParseFailureReason.LABEL_WITHOUT_VALUE: "После «{fragment}» нет показания.",
        ParseFailureReason.REPEATED_ZONE: "Зона «{fragment}» указана дважды.",
        ParseFailureReason.MIXED_LABELS: "Укажите зоны у всех показаний или ни у одного.",
        ParseFailureReason.COMMAND_ARGUMENT: "Не хватает данных для команды «{fragment}».",
        ParseFailureReason.TOO_LONG: "Сообщение слишком длинное.",
        ParseFailureReason.AMBIGUOUS: "Не ясно, где номер счёта.",
    },
    "en": {
        ParseFailureReason.EMPTY: "The message is empty.",
        ParseFailureReason.NO_READINGS: "No reading found.",
        ParseFailureReason.GARBLED_NUMBER: "There is a letter in “{fragment}”.",
        ParseFailureReason.UNKNOWN_WORD: "Unknown word “{fragment}”.",
        ParseFailureReason.LABEL_WITHOUT_VALUE: "No reading after “{fragment}”.",
        ParseFailureReason.REPEATED_ZONE: "Zone “{fragment}” is given twice.",
        ParseFailureReason.MIXED_LABELS: "Label every reading or none.",
        ParseFailureReason.COMMAND_ARGUMENT: "The command “{fragment}” needs more.",
        ParseFailureReason.TOO_LONG: "The message is too long.",
        ParseFailureReason.AMBIGUOUS: "It is not clear which number is the account.",
    },
}


# The same reasons, for a fragment that cleaning left empty: "После «» нет показания"
# would read as if the gateway had lost the word.
_FAILURE_TEXT_UNQUOTED = {
    "ru": {
        ParseFailureReason.GARBLED_NUMBER: "В числе есть буква.",
        ParseFailureReason.UNKNOWN_WORD: "Непонятное слово.",
        ParseFailureReason.LABEL_WITHOUT_VALUE: "После зоны нет показания.",
        ParseFailureReason.REPEATED_ZONE: "Зона указана дважды.",
        ParseFailureReason.COMMAND_ARGUMENT: "Не хватает данных для команды.",
    },
    "en": {
        ParseFailureReason.GARBLED_NUMBER: "There is a letter in a number.",
        ParseFailureReason.UNKNOWN_WORD: "Unknown word.",
        ParseFailureReason.LABEL_WITHOUT_VALUE: "No reading after a zone label.",
        ParseFailureReason.REPEATED_ZONE: "A zone is given twice.",
        ParseFailureReason.COMMAND_ARGUMENT: "The command needs more.",
    },
}

# Quoted fragments, in characters as the subscriber sees them.
_QUOTE_LONG = 20
_QUOTE_SHORT = 8
# Combining marks kept on one character: enough for any script's stacked accents,
# not for a "Zalgo" pile that would cost a segment on its own.
_MARKS_PER_CHARACTER = 2
# Categories shown as "?": a character the subscriber's phone drew (private use, one
# too new for our Unicode tables, half of a broken surrogate pair) that the reply
# cannot show; dropping it would quote a word the subscriber did not type.
_SHOWN_AS_QUESTION_MARK = frozenset({"Co", "Cn", "Cs"})


def _code_points(text: str) -> str:
    """`text` with surrogate pairs joined into their character; a lone surrogate is
    kept, for the caller to show as "?" (a str from surrogatepass decoding can hold
    both, and no SMS coding or XML can carry either)."""
    if not any("\ud800" <= ch <= "\udfff" for ch in text):
        return text
    joined: list[str] = []
    index = 0
    while index < len(text):
        ch = text[index]
        following = text[index + 1] if index + 1 < len(text) else ""
        if "\ud800" <= ch <= "\udbff" and "\udc00" <= following <= "\udfff":
            joined.append(chr(0x10000 + ((ord(ch) - 0xD800) << 10) + ord(following) - 0xDC00))
            index += 2
            continue
        joined.append(ch)
        index += 1
    return "".join(joined)


def _continues(ch: str, cluster: str) -> bool:
    """Whether `ch` belongs to the character `cluster` has begun: a combining mark,
    a skin-tone modifier, or the second regional indicator of a flag. Nothing sits on
    a space: a mark after one would be quoted on its own."""
    if cluster == " ":
        return False
    if unicodedata.category(ch)[0] == "M" or "\U0001f3fb" <= ch <= "\U0001f3ff":
        return True
    indicators = sum("\U0001f1e6" <= c <= "\U0001f1ff" for c in cluster)
    return "\U0001f1e6" <= ch <= "\U0001f1ff" and indicators == 1 == len(cluster)


def quoted(text: str, limit: int) -> str:
    """A piece of the subscriber's text as a reply may quote it: at most `limit`
    characters as the phone shows them, and only characters every transport carries.

    Whitespace of any kind (tab, line breaks, U+000B, U+000C, U+001C..U+001F, U+0085,
    no-break and other spaces) becomes one plain space; other control characters (Cc)
    and format characters (Cf: zero-width spaces, joiners, bidi overrides, soft
    hyphens) are dropped, since the subscriber never saw them; private-use,
    unassigned and lone surrogate code points become "?". A character is never cut
    from its combining marks (at most two kept), skin tone or flag partner. The result
    may be empty: the caller then words its reply without a quote.
    """
    cleaned: list[str] = []
    for ch in _code_points(text):
        if ch.isspace():
            if cleaned and cleaned[-1] != " ":
                cleaned.append(" ")
            continue
        category = unicodedata.category(ch)
        if category in ("Cc", "Cf"):
            continue
        cleaned.append("?" if category in _SHOWN_AS_QUESTION_MARK else ch)
    clusters: list[str] = []
    for ch in cleaned:
        if clusters and _continues(ch, clusters[-1]):
            marks = sum(unicodedata.category(c)[0] == "M" for c in clusters[-1])
            if unicodedata.category(ch)[0] != "M" or marks < _MARKS_PER_CHARACTER:
                clusters[-1] += ch
        elif len(clusters) == limit:
            break
        elif unicodedata.category(ch)[0] != "M":  # a mark with nothing to sit on
            clusters.append(ch)
    return "".join(clusters).strip()


def _unparsed(ctx: ReplyContext, locale: str) -> list[str]:
    failure = ctx.failure or ParseFailure(ParseFailureReason.NO_READINGS)
    if failure.reason == ParseFailureReason.COMMAND_ARGUMENT and failure.fragment.upper() in (
        "REG",
        "РЕГ",
    ):
        if locale == "en":
            return ["To link this phone send: REG <account> <last 4 digits of meter number>"]
        return ["Чтобы привязать телефон, отправьте: РЕГ <номер ЛС> <4 последние цифры счётчика>"]
    hint = _hint(ctx, locale)
    # "Т1 ... Т2 ..." already ends a sentence; no full stop after the ellipsis.
    stop = " " if hint.endswith("...") else ". "
    if locale == "en":
        tail = f"Send account and reading: {hint}{stop}Help: HELP"
    else:
        tail = f"Отправьте ЛС и показания: {hint}{stop}Справка: ПОМОЩЬ"
    template = _FAILURE_TEXT[locale][failure.reason]
    fragment = quoted(failure.fragment, _QUOTE_LONG)
    if "{fragment}" in template and not fragment:
        return [f"{_FAILURE_TEXT_UNQUOTED[locale][failure.reason]} {tail}", tail]
    reason = template.format(fragment=fragment)
    reason_short = template.format(fragment=quoted(failure.fragment, _QUOTE_SHORT))
    return [f"{reason} {tail}", f"{reason_short} {tail}", tail]


def _closed_account(ctx: ReplyContext, locale: str) -> list[str]:
    """Billing closed the account: say so, and where to turn ([gateway] contact, else
    the phone on the bill), so the subscriber does not keep re-checking the number."""
    if locale == "en":
        where = ctx.contact or "the phone number on your bill"
        variants = [
            f"Account {ctx.account} is closed and no longer served by SMS. Please call {where}.",
            f"Account {ctx.account} is closed for SMS. Call {where}.",
            f"Account {ctx.account} is closed for SMS. Info: {where}",
        ]
    else:
        where = f": {ctx.contact}" if ctx.contact else " по телефону из квитанции"
        variants = [
            f"ЛС {ctx.account} закрыт, по SMS показания не принимаются. "
            f"Обратитесь в расчётный центр{where}",
            f"ЛС {ctx.account} закрыт для SMS. Обратитесь в расчётный центр{where}",
            f"ЛС {ctx.account} закрыт для SMS. Справки: {ctx.contact}"
            if ctx.contact
            else f"ЛС {ctx.account} закрыт для SMS, звоните по телефону из квитанции",
        ]
    return variants[-1:] if ctx.several else variants


def _unknown_account(ctx: ReplyContext, locale: str) -> list[str]:
    if ctx.account_closed:
        return _closed_account(ctx, locale)
    if ctx.command is Command.LAST:
        if locale == "en":
            lead = f"Account {ctx.account} not found. " if ctx.account else ""
            return [f"{lead}Send: LAST <account number from your bill>, e.g. LAST 1234567833"]
        lead = f"ЛС {ctx.account} не найден. " if ctx.account else ""
        return [f"{lead}Отправьте: ИНФО <номер ЛС из квитанции>, например ИНФО 1234567833"]
    if ctx.account is None:
        if locale == "en":
            return ["Add your account number: 1234567833 5450. It is on your bill."]
        return ["Укажите номер ЛС из квитанции и показания, например: 1234567833 5450"]
    if ctx.several:  # the other parts show what to send; no example account here
        if locale == "en":
            return [f"Account {ctx.account} not found: check it on your bill."]
        return [f"ЛС {ctx.account} не найден, проверьте номер по квитанции."]
    if locale == "en":
        return [f"Account {ctx.account} not found. Check it on your bill and send: 1234567833 5450"]
    return [
        f"ЛС {ctx.account} не найден. Проверьте номер по квитанции и отправьте, "
        "например: 1234567833 5450",
    ]


def _meter_list(ctx: ReplyContext, locale: str) -> str:
    """' (5678, 9999)' for a linked phone; nothing for anyone else."""
    if not ctx.reveal_meters:
        return ""
    return " (" + ", ".join(m.serial[-4:] for m in ctx.meters[:4]) + ")"


def _meter_required(ctx: ReplyContext, locale: str) -> list[str]:
    if locale == "en":
        return [
            f"Account {ctx.account} has several meters{_meter_list(ctx, locale)}. "
            f"Name one by its last 4 digits: {_hint(ctx, locale)}",
        ]
    return [
        f"У ЛС {ctx.account} несколько счётчиков{_meter_list(ctx, locale)}. "
        f"Укажите 4 последние цифры номера: {_hint(ctx, locale)}",
    ]


def _unknown_meter(ctx: ReplyContext, locale: str) -> list[str]:
    # The parser hands over digits, but the text is the subscriber's: clean it anyway.
    # No reference typed (or none left) must not leave two spaces in a row.
    ref = quoted(ctx.meter_reference or "", 12)
    ref = f" {ref}" if ref else ""
    if ctx.command is Command.REGISTER:
        if locale == "en":
            return [
                f"Meter{ref} not found on account {ctx.account}. Send: REG {ctx.account} "
                "and the last 4 digits of the number on your meter",
            ]
        return [
            f"Счётчик{ref} не найден у ЛС {ctx.account}. Отправьте: РЕГ {ctx.account} "
            "и 4 последние цифры номера с вашего счётчика",
        ]
    if locale == "en":
        return [
            f"Meter{ref} not found on account {ctx.account}{_meter_list(ctx, locale)}. "
            f"Send: {_hint(ctx, locale)}",
        ]
    return [
        f"Счётчик{ref} не найден у ЛС {ctx.account}{_meter_list(ctx, locale)}. "
        f"Отправьте: {_hint(ctx, locale)}",
        f"Счётчик{ref} не найден у ЛС {ctx.account}{_meter_list(ctx, locale)}.",
    ]


def _zone_count(ctx: ReplyContext, locale: str) -> list[str]:
    zones = ctx.meter.zones if ctx.meter else 1
    if locale == "en":
        kind = {1: "single-rate", 2: "two-zone", 3: "three-zone"}[zones]
        return [
            f"The meter of account {ctx.account} is {kind}: send {zones} reading(s): "
            f"{_hint(ctx, locale)}",
        ]
    kind = {1: "однотарифный", 2: "двухтарифный", 3: "трёхтарифный"}[zones]
    need = {1: "одно показание", 2: "два показания", 3: "три показания"}[zones]
    return [f"Счётчик ЛС {ctx.account} {kind}, нужно {need}. Отправьте: {_hint(ctx, locale)}"]


def _too_many_digits(ctx: ReplyContext, locale: str) -> list[str]:
    digits = ctx.meter.digits if ctx.meter else 0
    d = ctx.decision
    zone = d.offending_zone if d and d.offending_zone else Zone.T1
    value = d.values[zone - 1] if d and d.values else 0
    if locale == "en":
        return [
            f"{value} is longer than the meter's {digits} digits. Send whole kWh, "
            f"black digits only: {_hint(ctx, locale)}",
        ]
    return [
        f"Показание {value} длиннее {digits} цифр счётчика. Отправьте целые кВт·ч, "
        f"без красных цифр: {_hint(ctx, locale)}",
        f"Показание {value} длиннее {digits} цифр счётчика. Отправьте: {_hint(ctx, locale)}",
    ]


def _lower_than_previous(ctx: ReplyContext, locale: str) -> list[str]:
    d = ctx.decision
    assert d is not None and d.previous is not None
    index = (d.offending_zone or Zone.T1) - 1
    label = _LABELS[locale][index] if len(d.values) > 1 else ""
    new, old = d.values[index], d.previous.values[index]
    when = d.previous.read_on.strftime("%d.%m.%Y")
    label_part = f"{label} " if label else ""
    if d.previous.from_billing:
        # Not ours: the subscriber may have sent it through the web cabinet or the app,
        # or an inspector read it. Say where it comes from.
        if locale == "en":
            return [
                f"{label_part}{new} is lower than the previous reading {old} "
                f"({when}, from billing). Check and send again: {_hint(ctx, locale)}",
            ]
        return [
            f"{label_part}{new} меньше прошлого показания {old} (на {when} по данным "
            f"расчётного центра). Проверьте и отправьте снова: {_hint(ctx, locale)}",
            f"{label_part}{new} меньше прошлого {old} (расчётный центр, {when}). "
            f"Отправьте: {_hint(ctx, locale)}",
            f"{label_part}{new} меньше прошлого {old} ({when}). Отправьте: {_hint(ctx, locale)}",
        ]
    if locale == "en":
        return [
            f"{label_part}{new} is lower than the previous reading {old} ({when}). "
            f"Check and send again: {_hint(ctx, locale)}",
        ]
    return [
        f"{label_part}{new} меньше прошлого показания {old} ({when}). "
        f"Проверьте и отправьте снова: {_hint(ctx, locale)}",
        f"{label_part}{new} меньше прошлого {old} ({when}). Отправьте: {_hint(ctx, locale)}",
    ]


def _outside_window(ctx: ReplyContext, locale: str) -> list[str]:
    start, end = ctx.window_start_day, ctx.window_end_day
    if locale == "en":
        return [
            f"Readings are taken from day {start} to {end} of the month. "
            f"Send them again from the {start}th: {_hint(ctx, locale)}",
        ]
    return [
        f"Показания принимаются с {start} по {end} число месяца. "
        f"Отправьте их с {start}-го: {_hint(ctx, locale)}",
    ]


_TEMPLATES: dict[Outcome, Variants] = {
    Outcome.ACCEPTED: _accepted,
    Outcome.ACCEPTED_NEXT_PERIOD: _accepted,
    Outcome.CORRECTED: _accepted,
    Outcome.CONFIRMED: _accepted,
    Outcome.DUPLICATE: _duplicate,
    Outcome.CONFIRM_NEEDED: _confirm_needed,
    Outcome.HELP: _help,
    Outcome.LAST_READING: _last_reading,
    Outcome.REGISTERED: _simple(
        "Телефон привязан к ЛС {account}. Теперь можно без номера ЛС, например: Т1 5450",
        "This phone is linked to account {account}. You may now omit it: T1 5450",
    ),
    Outcome.OPTED_OUT: _simple(
        "Подтверждения отключены. Об ошибках сообщим. Включить: СТАРТ",
        "Confirmations are off. Errors are still reported. To resume: START",
    ),
    Outcome.OPTED_IN: _simple(
        "Подтверждения включены. Отключить: СТОП",
        "Confirmations are on. To stop them: STOP",
    ),
    Outcome.UNPARSED: _unparsed,
    Outcome.UNKNOWN_ACCOUNT: _unknown_account,
    Outcome.METER_REQUIRED: _meter_required,
    Outcome.UNKNOWN_METER: _unknown_meter,
    Outcome.ZONE_COUNT: _zone_count,
    Outcome.TOO_MANY_DIGITS: _too_many_digits,
    Outcome.LOWER_THAN_PREVIOUS: _lower_than_previous,
    Outcome.PHONE_NOT_REGISTERED: _simple(
        "Этот телефон не привязан к ЛС {account}. Привяжите: РЕГ {account} и 4 последние "
        "цифры номера счётчика",
        "This phone is not linked to account {account}. Link it: REG {account} and the "
        "last 4 digits of the meter number",
    ),
    Outcome.RATE_LIMITED: _simple(
        "Слишком много сообщений. Следующие примем через час.",
        "Too many messages. Please try again in an hour.",
    ),
    Outcome.OUTSIDE_WINDOW: _outside_window,
}


def compose_reply(ctx: ReplyContext, locale: str = "ru") -> str:
    """The reply text for `ctx`, the wordiest variant that fits the outcome's budget."""
    budget = segment_budget(ctx.outcome)
    text = ""
    for text in _TEMPLATES[ctx.outcome](ctx, locale):
        if segment_count(text) <= budget:
            return text
    return text  # none fits: the shortest


def compose_replies(contexts: Sequence[ReplyContext], locale: str = "ru") -> tuple[str, ...]:
    """The reply to an SMS with several accounts or meters: one text reporting each
    part, within two segments, each part as wordy as the whole allows (the same level
    for all). When even the shortest does not fit, one text per account, each within
    two segments as far as its own parts allow."""
    shared = Counter(ctx.account for ctx in contexts)
    parts = [
        replace(ctx, several=True, name_meter=shared[ctx.account] > 1 and ctx.meter is not None)
        for ctx in contexts
    ]
    text, fits = _joined(parts, locale)
    if fits:
        return (text,)
    accounts = list(dict.fromkeys(ctx.account for ctx in parts))
    if len(accounts) == 1:
        return (text,)
    return tuple(
        _joined([ctx for ctx in parts if ctx.account == account], locale)[0] for account in accounts
    )


def _joined(parts: Sequence[ReplyContext], locale: str) -> tuple[str, bool]:
    """The parts' texts in one, at the wordiest level that fits two segments, and
    whether it fits. A part whose text does not name its account is led by it."""
    variants = [
        [_named(ctx, text, locale) for text in _TEMPLATES[ctx.outcome](ctx, locale)]
        for ctx in parts
    ]
    deepest = max(len(texts) for texts in variants)
    text = ""
    for level in range(deepest):
        text = " ".join(texts[min(level, len(texts) - 1)] for texts in variants)
        if segment_count(text) <= TWO_SEGMENTS:
            return text, True
    return text, False


def _named(ctx: ReplyContext, text: str, locale: str) -> str:
    """ "ЛС 5432109876: 1000 меньше прошлого ...": which account (and meter) a part is
    about, unless its text says so itself."""
    if ctx.account is None:
        return text
    who = f"{_ACCOUNT_WORD[locale]} {_who(ctx, locale)}"
    if who.lower() in text.lower():
        return text
    return f"{who}: {text}"
