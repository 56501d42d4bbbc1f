"""The words of the ops dashboard and its login form, per `[gateway] locale`.

One frozen dataclass holds every string, so a locale that forgets one is a type error
rather than a blank label. Placeholders are `str.format` fields. Codes that also
appear in /health, the JSON API and the logs (link states, outcomes, delivery
statuses) are shown as they are everywhere else and are not translated here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Texts:
    lang: str
    # the login form
    sign_in_title: str
    token_label: str
    sign_in: str
    token_hint: str
    no_token_configured: str
    wrong_token: str
    too_many_tries: str  # {minutes}
    # the dashboard
    product: str
    ops_title: str
    smpp_link: str
    twilio: str
    database: str
    on: str
    off: str
    sign_out: str
    messages_24h: str
    readings_booked: str
    answered_with_error: str
    smpp_links: str
    link_columns: tuple[str, ...]
    rates_note: str  # {minutes}
    chart_caption: str  # {timezone}
    chart_label: str
    outcomes_24h: str
    show_these: str
    not_handled_yet: str
    no_messages_24h: str
    latest_conversations: str
    search_label: str
    search_placeholder: str
    search: str
    outcome_chip: str  # {outcome}
    every_outcome: str
    clear: str
    show_full_numbers: str
    hide_full_numbers: str
    conversation_columns: tuple[str, ...]
    pending: str
    no_reply: str
    no_receipt_yet: str
    nothing_matches: str
    no_messages_yet: str
    not_a_phone_or_account: str  # {text}
    not_an_outcome: str  # {outcome}


RU = Texts(
    lang="ru",
    sign_in_title="Вход · SMS-шлюз",
    token_label="Токен доступа",
    sign_in="Войти",
    token_hint="Токен — это параметр <code>[ops] token</code> в настройках шлюза.",
    no_token_configured=(
        "Токен доступа не задан: укажите SMS_GATEWAY__OPS__TOKEN и перезапустите шлюз."
    ),
    wrong_token="Неверный токен.",
    too_many_tries="Слишком много неверных попыток. Повторите через {minutes} мин.",
    product="SMS-шлюз",
    ops_title="Мониторинг · SMS-шлюз",
    smpp_link="Канал SMPP",
    twilio="Twilio",
    database="База данных",
    on="вкл.",
    off="выкл.",
    sign_out="Выйти",
    messages_24h="Сообщения за 24 ч",
    readings_booked="Показания приняты",
    answered_with_error="Ответы с ошибкой",
    smpp_links="Каналы SMPP",
    link_columns=(
        "Канал",
        "Группа",
        "Состояние",
        "Подключён с (UTC)",
        "В обработке",
        "Входящих/мин",
        "Ответов/мин",
        "Последняя ошибка",
    ),
    rates_note="Скорость — за последние {minutes} мин, по журналу сообщений.",
    chart_caption="Входящие сообщения по часам за 24 ч ({timezone})",
    chart_label="Входящие сообщения по часам",
    outcomes_24h="Результаты за 24 ч",
    show_these="Показать эти переписки",
    not_handled_yet="ещё не обработано",
    no_messages_24h="За последние 24 часа сообщений не было.",
    latest_conversations="Последние переписки",
    search_label="Телефон или лицевой счёт",
    search_placeholder="например, 8 916 123-45-67 или 1234567833",
    search="Поиск",
    outcome_chip="результат: {outcome}",
    every_outcome="Показать все результаты",
    clear="Сбросить",
    show_full_numbers="Показать номера полностью",
    hide_full_numbers="Скрыть номера",
    conversation_columns=(
        "Время",
        "Телефон",
        "Лицевой счёт",
        "Сообщение",
        "Результат",
        "Наш ответ",
        "Доставка",
    ),
    pending="в обработке",
    no_reply="(без ответа)",
    no_receipt_yet="отчёта о доставке нет",
    nothing_matches="По этому запросу переписок не найдено.",
    no_messages_yet="Сообщений пока нет.",
    not_a_phone_or_account="«{text}» — не номер телефона и не лицевой счёт",
    not_an_outcome="«{outcome}» — нет такого результата",
)

EN = Texts(
    lang="en",
    sign_in_title="Sign in · SMS gateway",
    token_label="Ops token",
    sign_in="Sign in",
    token_hint="The token is the <code>[ops] token</code> of the gateway's configuration.",
    no_token_configured="No ops token is configured: set SMS_GATEWAY__OPS__TOKEN and restart.",
    wrong_token="That token is not right.",
    too_many_tries="Too many wrong tokens. Try again in {minutes} min.",
    product="SMS gateway",
    ops_title="Ops · SMS gateway",
    smpp_link="SMPP link",
    twilio="Twilio",
    database="Database",
    on="on",
    off="off",
    sign_out="Sign out",
    messages_24h="messages, last 24 h",
    readings_booked="readings booked",
    answered_with_error="answered with an error",
    smpp_links="SMPP links",
    link_columns=(
        "Link",
        "Group",
        "State",
        "Bound since (UTC)",
        "In flight",
        "MO/min",
        "Replies/min",
        "Last error",
    ),
    rates_note="Rates: the last {minutes} minutes, from the message log.",
    chart_caption="Inbound messages per hour, last 24 h ({timezone})",
    chart_label="Inbound messages per hour",
    outcomes_24h="Outcomes, last 24 h",
    show_these="Show these conversations",
    not_handled_yet="not handled yet",
    no_messages_24h="No messages in the last 24 hours.",
    latest_conversations="Latest conversations",
    search_label="Phone or account",
    search_placeholder="e.g. 8 916 123-45-67 or 1234567833",
    search="Search",
    outcome_chip="outcome: {outcome}",
    every_outcome="Show every outcome",
    clear="Clear",
    show_full_numbers="Show full numbers",
    hide_full_numbers="Hide full numbers",
    conversation_columns=(
        "Time",
        "Phone",
        "Account",
        "Message",
        "Outcome",
        "Our reply",
        "Delivery",
    ),
    pending="pending",
    no_reply="(no reply)",
    no_receipt_yet="no receipt yet",
    nothing_matches="No conversations match this search.",
    no_messages_yet="No messages yet.",
    not_a_phone_or_account="“{text}” is neither a phone number nor an account number",
    not_an_outcome="“{outcome}” is not an outcome",
)

_BY_LOCALE = {texts.lang: texts for texts in (RU, EN)}


def texts_for(locale: str) -> Texts:
    """The strings of `locale`; config validation admits only ru and en."""
    return _BY_LOCALE.get(locale, RU)
