"""The words of the command line and of the accounts file's problems, per `[gateway] locale`.

The same mechanism as the dashboard's adapters/http/texts.py: one frozen dataclass
holds every string, so a locale that forgets one is a type error. Placeholders are
`str.format` fields; numbers are passed already formatted (`number`, `decimal`), so
that Russian gets its spaces and decimal commas. Column names of the CSV files, config
keys, options and revisions stay as they are written, in either language.

The accounts import words its problems in the locale it is given: the CLI passes
`[gateway] locale`; the HTTP API, read by billing's programs, answers in English like
its other errors. Machine output (`config check`'s JSON, the CSV) is never translated.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class CliTexts:
    lang: str
    thousands_sep: str
    decimal_point: str
    # sms-gateway send
    no_reply: str
    bad_phone: str  # {phone}
    # errors of any command
    temporary_failure: str  # {reason}
    schema_out_of_date: str  # {current} {head}
    schema_at: str  # {revision}: the current of schema_out_of_date
    no_schema: str  # ... or this, when there is none
    # sms-gateway db upgrade
    db_created: str  # {after}
    db_upgraded: str  # {before} {after}
    db_already: str  # {revision}
    # sms-gateway db prune: {days} {messages} {inbound_parts} {pending_confirmations}
    # {ops_login_failures} {batches}
    pruned: str
    would_prune: str
    # sms-gateway readings export
    exported: str  # {count} {path}
    bad_period: str  # {period}
    # sms-gateway accounts import: ImportCounts' fields and {seconds}
    import_counts: tuple[str, ...]
    max_share_alone: str
    # the progress line on a terminal: {what} {done} {total} {rate} {left}
    progress: str
    checking: str
    writing: str
    exporting: str
    # the accounts file's problems (adapters/db/bulk.py)
    file_rejected: str
    at_line: str  # {line} {problem}
    more_bad_lines: str  # {count}
    account_empty: str
    account_pattern: str  # {account}
    bad_serial: str  # {serial}
    bad_zones: str  # {zones}
    bad_digits: str  # {digits}
    bad_file_phone: str  # {phone}
    negative: str  # {column}
    beyond_zones: str  # {column} {zones}
    too_wide: str  # {column} {value} {digits}
    bad_date: str  # {text}
    some_last_values: str  # {zones}
    date_required: str
    not_whole: str  # {column} {text}
    extra_fields: str
    not_utf8: str  # {reason}
    csv_unreadable: str  # {reason}
    header_lacks: str  # {missing} {expected}
    meter_twice: str  # {serial} {account} {first}
    no_rows: str
    unreadable: str  # {path} {reason}
    import_busy: str
    # --prune refused: {closing} {open} {share} {accounts} {limit} {suggest}
    prune_refused: str
    prune_refused_why: str

    def number(self, value: int) -> str:
        """1234567 as this language writes it: 1,234,567 or 1 234 567."""
        return f"{value:,}".replace(",", self.thousands_sep)

    def decimal(self, value: float, places: int = 1) -> str:
        """0.4 or 0,4; 1,234.5 or 1 234,5."""
        return f"{value:,.{places}f}".translate(
            {ord(","): self.thousands_sep, ord("."): self.decimal_point}
        )

    def numbers(self, counts: Any) -> dict[str, str]:
        """Every whole-number field of a dataclass of counts, formatted, by name."""
        return {
            name: self.number(value)
            for name, value in dataclasses.asdict(counts).items()
            if isinstance(value, int)
        }

    def share(self, value: float) -> str:
        """0.125 as a percentage: 12.5 % or 12,5 %; 0.1: 10 %."""
        percent = value * 100
        places = 0 if abs(percent - round(percent)) < 0.05 else 1
        return f"{self.decimal(percent, places)} %"


RU = CliTexts(
    lang="ru",
    thousands_sep=" ",
    decimal_point=",",
    no_reply="(без ответа)",
    bad_phone="--from: «{phone}» — не номер телефона",
    temporary_failure="временный сбой, повторите позже: {reason}",
    schema_out_of_date=(
        "схема базы данных: {current}, а программе нужна версия {head}: "
        "выполните `sms-gateway db upgrade`"
    ),
    schema_at="версия {revision}",
    no_schema="её нет",
    db_created="база данных создана: схема в версии {after}",
    db_upgraded="база данных обновлена с версии {before} до {after}",
    db_already="база данных уже в версии {revision}",
    pruned=(
        "удалено старше {days} дн.: сообщений {messages}, частей длинных SMS "
        "{inbound_parts}, ожидавших подтверждения {pending_confirmations}, неудачных "
        "входов {ops_login_failures} (пакетов {batches}); показания не удаляются никогда"
    ),
    would_prune=(
        "будет удалено старше {days} дн.: сообщений {messages}, частей длинных SMS "
        "{inbound_parts}, ожидающих подтверждения {pending_confirmations}, неудачных "
        "входов {ops_login_failures} (пакетов {batches}); показания не удаляются никогда"
    ),
    exported="выгружено показаний: {count}, в файл {path}",
    bad_period="--period: нужен месяц в виде ГГГГ-ММ, а не «{period}»",
    import_counts=(
        "прочитано строк: {rows} за {seconds} с",
        "лицевые счета: создано {accounts_created}, обновлено (открыты снова) "
        "{accounts_updated}, без изменений {accounts_unchanged}, закрыто {accounts_closed}",
        "счётчики:      создано {meters_created}, обновлено {meters_updated}, "
        "без изменений {meters_unchanged}, закрыто {meters_closed}",
        "телефоны:      добавлено {phones_added}, без изменений {phones_unchanged}",
    ),
    max_share_alone="--prune-max-share действует только вместе с --prune",
    progress="{what}: строки {done} из {total}, {rate} в секунду, осталось {left} с",
    checking="проверка",
    writing="запись",
    exporting="выгрузка",
    file_rejected="файл отклонён, ничего не импортировано:",
    at_line="строка {line}: {problem}",
    more_bad_lines="... и ещё строк с ошибками: {count}",
    account_empty="не заполнен account (лицевой счёт)",
    account_pattern="account «{account}» не подходит под [gateway] account_pattern",
    bad_serial="meter_serial «{serial}»: нужно от 1 до 32 латинских букв, цифр или «-»",
    bad_zones="zones должно быть 1, 2 или 3, а не {zones}",
    bad_digits="digits должно быть от 1 до 9, а не {digits}",
    bad_file_phone="phones: «{phone}» — не номер телефона",
    negative="{column} не может быть отрицательным",
    beyond_zones="{column} задан, а у счётчика zones = {zones}",
    too_wide="{column} = {value}: цифр больше, чем digits = {digits}",
    bad_date="last_read_on «{text}» — не дата вида ГГГГ-ММ-ДД",
    some_last_values="нужны все last_t счётчика (zones = {zones}) или ни одного",
    date_required="к значениям last_t нужна дата last_read_on",
    not_whole="{column} должно быть целым числом, а не «{text}»",
    extra_fields="полей больше, чем столбцов в заголовке",
    not_utf8="текст не в кодировке UTF-8 ({reason})",
    csv_unreadable="CSV не читается: {reason}",
    header_lacks="в заголовке нет столбцов {missing}; нужны {expected}",
    meter_twice="счётчик {serial} лицевого счёта {account} уже есть в строке {first}",
    no_rows="в файле нет строк после заголовка",
    unreadable="{path}: файл не читается ({reason})",
    import_busy="в эту базу данных уже идёт другой импорт лицевых счетов",
    prune_refused="--prune отклонён, ничего не импортировано:",
    prune_refused_why=(
        "файл закрыл бы {closing} из {open} открытых счётчиков ({share}) и лицевых "
        "счетов: {accounts}, больше предела {limit} ([billing] prune_max_share). "
        "Файл обрезан или неполный? Если это полный список расчётного центра, "
        "повторите с --prune-max-share {suggest} (по HTTP: prune_max_share={suggest})"
    ),
)

EN = CliTexts(
    lang="en",
    thousands_sep=",",
    decimal_point=".",
    no_reply="(no reply)",
    bad_phone="--from: {phone!r} is not a phone number",
    temporary_failure="temporary failure, try again later: {reason}",
    schema_out_of_date=(
        "database schema is at {current}, the code needs {head}: run `sms-gateway db upgrade`"
    ),
    schema_at="{revision}",
    no_schema="nothing",
    db_created="database upgraded from empty to {after}",
    db_upgraded="database upgraded from {before} to {after}",
    db_already="database already at {revision}",
    pruned=(
        "pruned what is older than {days} days: {messages} messages, {inbound_parts} "
        "inbound parts, {pending_confirmations} pending confirmations, "
        "{ops_login_failures} ops login failures ({batches} batches); readings are never "
        "pruned"
    ),
    would_prune=(
        "would prune what is older than {days} days: {messages} messages, {inbound_parts} "
        "inbound parts, {pending_confirmations} pending confirmations, "
        "{ops_login_failures} ops login failures ({batches} batches); readings are never "
        "pruned"
    ),
    exported="exported {count} readings to {path}",
    bad_period="--period: expected a month as YYYY-MM, got {period!r}",
    import_counts=(
        "imported {rows} rows in {seconds} s",
        "accounts: {accounts_created} created, {accounts_updated} updated (reopened), "
        "{accounts_unchanged} unchanged, {accounts_closed} closed",
        "meters:   {meters_created} created, {meters_updated} updated, "
        "{meters_unchanged} unchanged, {meters_closed} closed",
        "phones:   {phones_added} added, {phones_unchanged} unchanged",
    ),
    max_share_alone="--prune-max-share goes with --prune",
    progress="{what}: {done}/{total} rows, {rate} rows/s, {left} s left",
    checking="checking",
    writing="writing",
    exporting="export",
    file_rejected="file rejected, nothing imported:",
    at_line="line {line}: {problem}",
    more_bad_lines="... and {count} more bad lines",
    account_empty="account is empty",
    account_pattern="account {account!r} does not match [gateway] account_pattern",
    bad_serial="meter_serial {serial!r} must be 1-32 letters, digits or '-'",
    bad_zones="zones must be 1, 2 or 3, got {zones}",
    bad_digits="digits must be 1..9, got {digits}",
    bad_file_phone="phone {phone!r} is not a phone number",
    negative="{column} must not be negative",
    beyond_zones="{column} given for a {zones}-zone meter",
    too_wide="{column} {value} is wider than {digits} digits",
    bad_date="last_read_on {text!r} is not YYYY-MM-DD",
    some_last_values="give all {zones} last_t values or none",
    date_required="last_read_on is required with last_t values",
    not_whole="{column} must be a whole number, got {text!r}",
    extra_fields="more fields than the header has",
    not_utf8="not UTF-8 ({reason})",
    csv_unreadable="{reason}",
    header_lacks="header lacks column(s) {missing}; expected {expected}",
    meter_twice="meter {serial} of account {account} already on line {first}",
    no_rows="the file has no rows after the header",
    unreadable="{path}: {reason}",
    import_busy="another accounts import of this database is running",
    prune_refused="prune refused, nothing imported:",
    prune_refused_why=(
        "the file would close {closing} of {open} open meters ({share}) and {accounts} "
        "accounts, more than the limit of {limit} ([billing] prune_max_share). A truncated "
        "or partial file? If it is billing's full list, run again with --prune-max-share "
        "{suggest} (over HTTP: prune_max_share={suggest})"
    ),
)

_BY_LOCALE = {texts.lang: texts for texts in (RU, EN)}


def cli_texts(locale: str) -> CliTexts:
    """The strings of `locale`; config validation admits only ru and en."""
    return _BY_LOCALE.get(locale, RU)
