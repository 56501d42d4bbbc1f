"""What subscribers type, and what the grammar must make of it.

One row per text: the exact ParsedMessage expected from
MessageParser(r"\\d{10,12}|[A-Z]{2,4}\\d{3,10}").parse(text).
"""

from __future__ import annotations

from sms_gateway.domain.model import Zone
from sms_gateway.domain.parsed import (
    Command,
    ParsedCommand,
    ParsedMessage,
    ParsedReadings,
    ParseFailure,
    ParseFailureReason,
    SeveralReadings,
)

ACCOUNT_PATTERN = r"\d{10,12}|[A-Z]{2,4}\d{3,10}"

T1, T2, T3 = Zone.T1, Zone.T2, Zone.T3
R = ParseFailureReason


def readings(
    *numbers: str,
    labelled: tuple[tuple[Zone, int | str], ...] = (),
    account: str | None = None,
    meter: str | None = None,
    joins: tuple[tuple[int, int], ...] = (),
    breaks: tuple[tuple[int, str], ...] = (),
    total: str | None = None,
) -> ParsedReadings:
    return ParsedReadings(
        numbers=numbers,
        labelled=tuple((zone, str(value)) for zone, value in labelled),
        account_hint=account,
        meter_hint=meter,
        total=total,
        breaks=breaks,
        joins=joins,
    )


def command(
    name: Command, account: str | None = None, argument: str | None = None
) -> ParsedCommand:
    return ParsedCommand(name, account=account, argument=argument)


def failure(reason: ParseFailureReason, fragment: str = "") -> ParseFailure:
    return ParseFailure(reason, fragment)


POSITIONAL: list[tuple[str, ParsedMessage]] = [
    ("1234567833 1234", readings("1234567833", "1234")),
    ("5550001112 5450 2130", readings("5550001112", "5450", "2130")),
    # "900 640 1550" joined would be ten digits, an account shape: the service may try it
    ("7770003334 900 640 1550", readings("7770003334", "900", "640", "1550", joins=((1, 4),))),
    ("5550001112 5450/2130", readings("5550001112", "5450", "2130")),
    ("121000000000*0563", readings("121000000000", "0563")),
    ("1234567833#12345678#5450", readings("1234567833", "12345678", "5450")),
    ("1234567833 #12345678 5450", readings("1234567833", "12345678", "5450")),
    ("   1234567833    1234   ", readings("1234567833", "1234")),
    ("1234567833\n1234", readings("1234567833", "1234")),
    ("1234567833\t1234", readings("1234567833", "1234")),
    ("1234567833\r\n5450\r\n2130\r\n", readings("1234567833", "5450", "2130")),
    ("1234567833,1234", readings("1234567833", "1234")),
    ("1234567833;1234", readings("1234567833", "1234")),
    ("1234567833_1234", readings("1234567833", "1234")),
    ("1234567833, 5450, 2130", readings("1234567833", "5450", "2130")),
    ("1234567833 ; 5450 ;; 2130;", readings("1234567833", "5450", "2130")),
    ("0012345678 0100", readings("0012345678", "0100")),
    ("1234567833 - 1234", readings("1234567833", "1234")),
    ("1234567833: 1234!", readings("1234567833", "1234")),
    ("1234567833 (1234)", readings("1234567833", "1234")),
    # full-width digits and an ideographic space (NFKC)
    ("１２３４５６７８３３\u30001234", readings("1234567833", "1234")),
    ("１２３４５６７８３３ １２３４", readings("1234567833", "1234")),
    ("1234567833\u00a01234", readings("1234567833", "1234")),
    # trailing punctuation and units
    ("1234567833 1234.", readings("1234567833", "1234")),
    ("1234567833 1234...", readings("1234567833", "1234")),
    ("1234567833 1234 кВт", readings("1234567833", "1234")),
    ("1234567833 1234квт", readings("1234567833", "1234")),
    ("1234567833 1234квт.ч", readings("1234567833", "1234")),
    ("1234567833 1234 кВт*ч", readings("1234567833", "1234")),
    ("1234567833 1234 кВт·ч", readings("1234567833", "1234")),
    ("1234567833 1234 KWH", readings("1234567833", "1234")),
    ("1234567833 1234 kWh", readings("1234567833", "1234")),
    ("1234567833 1234kwh.", readings("1234567833", "1234")),
    ("5550001112 5450 квт 2130 квт", readings("5550001112", "5450", "2130")),
    # fractions are dropped; three or more digits after the mark are a new number
    ("1234567833 1234,7", readings("1234567833", "1234")),
    ("1234567833 1234.75", readings("1234567833", "1234")),
    ("1234567833 1234,75 кВт", readings("1234567833", "1234")),
    ("1234567833 1234.567", readings("1234567833", "1234", "567")),
    ("5550001112 5450,2130", readings("5550001112", "5450", "2130")),
    ("5550001112 5450,5 2130,25", readings("5550001112", "5450", "2130")),
    ("5550001112 5450.5/2130.5", readings("5550001112", "5450", "2130")),
    ("5550001112 5450, 21", readings("5550001112", "5450", "21")),
    # emoji and other symbols separate like punctuation
    ("1234567833 1234 👍", readings("1234567833", "1234")),
    ("1234567833 → 1234", readings("1234567833", "1234")),
]

LABELLED: list[tuple[str, ParsedMessage]] = [
    ("Т1 5450 Т2 2130", readings(labelled=((T1, 5450), (T2, 2130)))),  # Cyrillic Т
    ("T1 5450 T2 2130", readings(labelled=((T1, 5450), (T2, 2130)))),  # Latin T
    ("t1=5450;t2=2130", readings(labelled=((T1, 5450), (T2, 2130)))),
    ("Т2-2130 Т1-5450", readings(labelled=((T2, 2130), (T1, 5450)))),
    ("T1:5450, T2:2130", readings(labelled=((T1, 5450), (T2, 2130)))),
    ("Т1 5450\nТ2 2130", readings(labelled=((T1, 5450), (T2, 2130)))),
    ("Т15450 Т22130", readings(labelled=((T1, 5450), (T2, 2130)))),
    ("Т 1 5450 Т 2 2130", readings(labelled=((T1, 5450), (T2, 2130)))),
    ("т-1 5450 т-2 2130", readings(labelled=((T1, 5450), (T2, 2130)))),
    (
        "пиковый 900 полупиковая 1550 ночной 640",
        readings(labelled=((T1, 900), (T3, 1550), (T2, 640))),
    ),
    ("DAY123", readings(labelled=((T1, 123),))),  # a label wins over the account pattern
    ("т3 1550 т1 900 т2 640", readings(labelled=((T3, 1550), (T1, 900), (T2, 640)))),
    ("день 5450 ночь 2130", readings(labelled=((T1, 5450), (T2, 2130)))),
    ("ДЕНЬ 5450 НОЧЬ 2130", readings(labelled=((T1, 5450), (T2, 2130)))),
    ("День: 5450, Ночь: 2130", readings(labelled=((T1, 5450), (T2, 2130)))),
    ("Д5450 Н2130", readings(labelled=((T1, 5450), (T2, 2130)))),
    ("д 5450 н 2130", readings(labelled=((T1, 5450), (T2, 2130)))),
    ("H2130 Д5450", readings(labelled=((T2, 2130), (T1, 5450)))),  # Latin H for Н
    ("дневной 5450 ночной 2130", readings(labelled=((T1, 5450), (T2, 2130)))),
    ("пик 900 ночь 640 полупик 1550", readings(labelled=((T1, 900), (T2, 640), (T3, 1550)))),
    ("П900 ПП1550 Н640", readings(labelled=((T1, 900), (T3, 1550), (T2, 640)))),
    ("п/п 1550 пик 900 ночь 640", readings(labelled=((T3, 1550), (T1, 900), (T2, 640)))),
    ("DAY 5450 NIGHT 2130", readings(labelled=((T1, 5450), (T2, 2130)))),
    ("day=5450 night=2130", readings(labelled=((T1, 5450), (T2, 2130)))),
    ("D5450 N2130", readings(labelled=((T1, 5450), (T2, 2130)))),
    ("d 5450 n 2130", readings(labelled=((T1, 5450), (T2, 2130)))),
    ("Т1 5450,5 Т2 2130.25 кВт", readings(labelled=((T1, 5450), (T2, 2130)))),
    ("Т1 ０５４５０", readings(labelled=((T1, "05450"),))),  # as typed: the register decides
    ("5550001112 Т1 5450 Т2 2130", readings("5550001112", labelled=((T1, 5450), (T2, 2130)))),
    # an account may stand bare after the labels, a reading may not (see MIXED_LABELS)
    ("Т1 5450 Т2 2130 5550001112", readings("5550001112", labelled=((T1, 5450), (T2, 2130)))),
    (
        "1234567833 12345678 Т1 5450",
        readings("1234567833", "12345678", labelled=((T1, 5450),)),
    ),
]

ACCOUNTS_AND_NOISE: list[tuple[str, ParsedMessage]] = [
    (
        "ЛС 5550001112 Т1 5450 Т2 2130",
        readings(labelled=((T1, 5450), (T2, 2130)), account="5550001112"),
    ),
    (
        "Т1 5450 Т2 2130 ЛС 5550001112",
        readings(labelled=((T1, 5450), (T2, 2130)), account="5550001112"),
    ),
    ("ЛС 5550001112 5450", readings("5450", account="5550001112")),
    ("Л/С 5550001112 5450", readings("5450", account="5550001112")),
    ("л.с. 5550001112 5450", readings("5450", account="5550001112")),
    ("л/с: 5550001112 5450", readings("5450", account="5550001112")),
    ("лс№ 5550001112 5450", readings("5450", account="5550001112")),
    ("ЛС № 5550001112 5450", readings("5450", account="5550001112")),
    ("лс5550001112 5450", readings("5450", account="5550001112")),
    ("ЛC 5550001112 5450", readings("5450", account="5550001112")),  # Latin C
    ("счет 5550001112 5450", readings("5450", account="5550001112")),
    ("Счёт 5550001112 5450", readings("5450", account="5550001112")),
    ("лицевой счет 5550001112 5450", readings("5450", account="5550001112")),
    ("Лицевой счёт: 5550001112, показания: 5450", readings("5450", account="5550001112")),
    ("лицевой счет 1234567833 пок. 1234 квт", readings("1234", account="1234567833")),
    ("показания 5450 лс 5550001112", readings("5450", account="5550001112")),
    ("ACC 5550001112 5450", readings("5450", account="5550001112")),
    ("acc: 5550001112 5450", readings("5450", account="5550001112")),
    ("ЛС 0012345678 5450", readings("5450", account="0012345678")),
    ("ЛС 5550001112 ЛС 5550001112 5450", readings("5450", account="5550001112")),
    # alphanumeric accounts, folded to Latin capitals
    ("ACC123 45678", readings("45678", account="ACC123")),
    ("АСС123 45678", readings("45678", account="ACC123")),  # Cyrillic А С С
    ("acc123 45678", readings("45678", account="ACC123")),
    ("45678 ACC123", readings("45678", account="ACC123")),
    ("ЛС ACC123 45678", readings("45678", account="ACC123")),
    ("ЛС ав0012345 100", readings("100", account="AB0012345")),  # Cyrillic а в
    ("ACC123 Т1 5450 Т2 2130", readings(labelled=((T1, 5450), (T2, 2130)), account="ACC123")),
    # greetings, thanks and filler words
    (
        "Здравствуйте! ЛС 1234567833 показания 1234. Спасибо",
        readings("1234", account="1234567833"),
    ),
    ("Добрый день! 1234567833 1234", readings("1234567833", "1234")),
    ("добрый день 1234567833 1234", readings("1234567833", "1234")),
    ("День добрый, 1234567833 1234", readings("1234567833", "1234")),
    ("Доброе утро 1234567833 1234", readings("1234567833", "1234")),
    ("Доброго времени суток! 1234567833 1234", readings("1234567833", "1234")),
    (
        "добрый вечер, лс 1234567833 день 5450 ночь 2130, спасибо",
        readings(labelled=((T1, 5450), (T2, 2130)), account="1234567833"),
    ),
    (
        "Добрый день! ЛС 1234567833 день 5450 ночь 2130",
        readings(labelled=((T1, 5450), (T2, 2130)), account="1234567833"),
    ),
    ("Привет 1234567833 1234", readings("1234567833", "1234")),
    ("1234567833 1234 спасибо!", readings("1234567833", "1234")),
    ("1234567833 1234 Благодарю", readings("1234567833", "1234")),
    ("пожалуйста 1234567833 1234", readings("1234567833", "1234")),
    ("Hello 1234567833 1234 thanks", readings("1234567833", "1234")),
    ("Здравствуйте, передаю показания: 1234567833 1234", readings("1234567833", "1234")),
    ("показания за май 1234567833 1234", readings("1234567833", "1234")),
    # dates are not readings: with a year, after a preposition, or with a month name
    ("1234567833 5450 25.11.2026", readings("1234567833", "5450")),
    ("1234567833 5450 25/11/26", readings("1234567833", "5450")),
    ("1234567833 5450 1-12-2026", readings("1234567833", "5450")),
    ("25.11.2026г. 1234567833 5450", readings("1234567833", "5450")),
    ("показания от 25.11.2026 года 1234567833 5450", readings("1234567833", "5450")),
    (
        "1234567833 Т1 5450 Т2 2130 на 25.11",
        readings("1234567833", labelled=((T1, 5450), (T2, 2130))),
    ),
    ("1234567833 5450 за 25 ноября 2026 г.", readings("1234567833", "5450")),
    ("1234567833 на 1 декабря 5450", readings("1234567833", "5450")),
    # a day and month alone may be a reading with its fraction: a new meter reads 25.5
    ("1234567833 5450 25.11", readings("1234567833", "5450", "25")),
    # not a date: mixed separators, a reading glued to a month
    ("1234567833 5450 25.11-2026", readings("1234567833", "5450", "25", "2026", joins=((1, 4),))),
    ("1234567833 5450 ноябрь", readings("1234567833", "5450")),
    ("1234567833 показания счетчика 1234", readings("1234567833", "1234")),
    (
        "Здравствуйте!\n\nЛС 1234567833\nТ1 5450\nТ2 2130\n\nС уважением",
        readings(labelled=((T1, 5450), (T2, 2130)), account="1234567833"),
    ),
    (
        "ЛС 5550001112\nДень - 5450,3\nНочь - 2130,7\nС уважением, Иванова А.",
        readings(labelled=((T1, 5450), (T2, 2130)), account="5550001112"),
    ),
    # meters
    ("5550001112", readings("5550001112")),  # only the service knows it is an account
    ("ПУ 5678 5450", readings("5450", meter="5678")),
    ("ЛС 5550001112 ПУ 1111 ПУ 1111 5", readings("5", account="5550001112", meter="1111")),
    ("пу5678 5450", readings("5450", meter="5678")),
    ("1234567833 ПУ 5678 5450", readings("1234567833", "5450", meter="5678")),
    ("1234567833 №12345678 5450", readings("1234567833", "5450", meter="12345678")),
    ("1234567833 № 12345678 5450", readings("1234567833", "5450", meter="12345678")),
    (
        "ЛС 1234567833 № 12345678 5450",
        readings("5450", account="1234567833", meter="12345678"),
    ),
    (
        "ЛС 1234567833 п/у 5678 Т1 5450 Т2 2130",
        readings(labelled=((T1, 5450), (T2, 2130)), account="1234567833", meter="5678"),
    ),
]

# Words the grammar does not know are left out, unless they stand between two numbers
# (then the service decides, see `breaks`) or where a value must stand.
NOISE: list[tuple[str, ParsedMessage]] = [
    ("1234567833 ٣٤٥", readings("1234567833", "345")),  # Arabic-Indic digits are digits
    ("1234567833 ۵۴۵۰", readings("1234567833", "5450")),  # Persian
    ("1234567833 1234 дом", readings("1234567833", "1234")),
    ("1234567833 1234 Иван", readings("1234567833", "1234")),
    ("hello world 1234", readings("1234")),
    ("добрый 1234567833 1234", readings("1234567833", "1234")),
    ("Дом 5450", readings("5450")),  # "Д" is a label only on its own
    ("5450 прошлый 5300", readings("5450", "5300", breaks=((1, "прошлый"),))),
    ("Показания 1234567833 1234\nОтправлено с iPhone", readings("1234567833", "1234")),
    ("1234567833 1234\nSent from my Galaxy S23", readings("1234567833", "1234")),
    ("1234567833 1234\n--\nИванов И.И. 8-916-123-45-67", readings("1234567833", "1234")),
    ("1234567833 1234 тел. 8 916 123 45 67", readings("1234567833", "1234")),
    ("1234567833 1234 +7 (916) 123-45-67", readings("1234567833", "1234")),
    ("1) ЛС 1234567833\n2) 1234", readings("1234", account="1234567833")),
    ("за октябрь 2026 г. 1234567833 1234", readings("1234567833", "1234")),
    ("Т1 5450 Т2 2130 итого 7580", readings(labelled=((T1, 5450), (T2, 2130)), total="7580")),
    ("поазания лецевой счот 1234567833 1234", readings("1234", account="1234567833")),
    ("gjrfpfybz 1234567833 1234", readings("1234567833", "1234")),  # показания, Latin layout
    ("LS 1234567833 pokazaniya 1234 kvt", readings("1234", account="1234567833")),
    ("den 5450 noch 2130", readings(labelled=((T1, 5450), (T2, 2130)))),
    ("нoчь 2130 дeнь 5450", readings(labelled=((T2, 2130), (T1, 5450)))),  # Latin o, e
    ("1234567833Д5450Н2130", readings("1234567833", labelled=((T1, 5450), (T2, 2130)))),
    ("пик900полупик1550ночь640", readings(labelled=((T1, 900), (T3, 1550), (T2, 640)))),
    ("Т2 (ночь) 2130 Т1 (день) 5450", readings(labelled=((T2, 2130), (T1, 5450)))),
    ("тариф 2 2130 тариф 1 5450", readings(labelled=((T2, 2130), (T1, 5450)))),
    ("ЛС 123 456 7833 1234", readings("1234", account="1234567833")),
    ("123-456-7833 1234", readings("123", "456", "7833", "1234", joins=((0, 4),))),
    ("№ 1234567833 1234", readings("1234", account="1234567833")),
    ("N1234567833 1234", readings("1234", account="1234567833")),
    ("счетчик № 12345678 1234", readings("1234", meter="12345678")),
    ("1234567833 1234 квт/ч", readings("1234567833", "1234")),
    ("1234567833 1234 киловатт-час", readings("1234567833", "1234")),
    ("как передать показания?", command(Command.HELP)),
    ("что отправлять", command(Command.HELP)),
    # several accounts or meters: one part each
    (
        "ЛС 1111111111 5450 ЛС 2222222222",
        SeveralReadings((readings("5450", account="1111111111"), readings(account="2222222222"))),
    ),
    (
        "ПУ 1111 5450 ПУ 2222",
        SeveralReadings((readings("5450", meter="1111"), readings(meter="2222"))),
    ),
]

COMMANDS: list[tuple[str, ParsedMessage]] = [
    ("HELP", command(Command.HELP)),
    ("help", command(Command.HELP)),
    ("НЕLР", command(Command.HELP)),  # Cyrillic Н Е Р around a Latin L
    ("ПОМОЩЬ", command(Command.HELP)),
    ("Помощь?", command(Command.HELP)),
    ("справка", command(Command.HELP)),
    ("?", command(Command.HELP)),
    (" ?? ", command(Command.HELP)),
    ("0", command(Command.HELP)),
    ("0.", command(Command.HELP)),
    ("Здравствуйте, помощь пожалуйста", command(Command.HELP)),
    ("LAST", command(Command.LAST)),
    ("last 5550001112", command(Command.LAST, account="5550001112")),
    ("ПОСЛЕДНИЕ", command(Command.LAST)),
    ("последние 5550001112", command(Command.LAST, account="5550001112")),
    ("последние показания 5550001112", command(Command.LAST, account="5550001112")),
    ("ИНФО 5550001112", command(Command.LAST, account="5550001112")),
    ("info", command(Command.LAST)),
    ("инфо лс 5550001112", command(Command.LAST, account="5550001112")),
    ("LAST ACC123", command(Command.LAST, account="ACC123")),
    ("last асс123", command(Command.LAST, account="ACC123")),
    ("REG 5550001112 5678", command(Command.REGISTER, account="5550001112", argument="5678")),
    ("РЕГ 5550001112 5678", command(Command.REGISTER, account="5550001112", argument="5678")),
    ("reg 5550001112 пу 5678", command(Command.REGISTER, account="5550001112", argument="5678")),
    ("REG ЛС 5550001112 12345678", command(Command.REGISTER, "5550001112", "12345678")),
    ("REG ACC123 0567", command(Command.REGISTER, account="ACC123", argument="0567")),
    ("STOP", command(Command.STOP)),
    ("stop", command(Command.STOP)),
    ("СТОП", command(Command.STOP)),
    ("Стоп, спасибо", command(Command.STOP)),
    ("START", command(Command.START)),
    ("СТАРТ", command(Command.START)),
    ("старт!", command(Command.START)),
]

FAILURES: list[tuple[str, ParsedMessage]] = [
    ("", failure(R.EMPTY)),
    ("   ", failure(R.EMPTY)),
    ("\n\t", failure(R.EMPTY)),
    ("...", failure(R.EMPTY)),
    ("👍", failure(R.EMPTY)),
    ("1" * 481, failure(R.TOO_LONG, "1" * 30)),
    ("спасибо", failure(R.NO_READINGS)),
    ("Добрый день!", failure(R.NO_READINGS)),
    ("показания", failure(R.NO_READINGS)),
    ("ЛС 5550001112", failure(R.NO_READINGS)),
    ("ACC123", failure(R.NO_READINGS)),
    ("ПУ 5678", failure(R.NO_READINGS)),
    ("12З4", failure(R.GARBLED_NUMBER, "12З4")),  # Cyrillic З, never read as 3
    ("１２З４", failure(R.GARBLED_NUMBER, "12З4")),
    ("1234567833 12З4", failure(R.GARBLED_NUMBER, "12З4")),
    ("1234567833 1O5", failure(R.GARBLED_NUMBER, "1O5")),  # Latin O, never read as 0
    ("1234567833 l234", failure(R.GARBLED_NUMBER, "l234")),  # l, never read as 1
    ("Т1 54О0", failure(R.GARBLED_NUMBER, "54О0")),
    ("ЛС 12З4567890 5450", failure(R.GARBLED_NUMBER, "12З4567890")),
    ("ПУ 56a8 5450", failure(R.GARBLED_NUMBER, "56a8")),
    ("1234567833 12ü4", failure(R.GARBLED_NUMBER, "12ü4")),
    ("1234567833 стоп", failure(R.UNKNOWN_WORD, "стоп")),
    ("Т1 пять", failure(R.UNKNOWN_WORD, "пять")),  # a word where the value must stand
    ("ЛС Иванов 5450", failure(R.UNKNOWN_WORD, "Иванов")),
    ("Т1 Т2 2130", failure(R.LABEL_WITHOUT_VALUE, "Т1")),
    ("1234567833 Т1", failure(R.LABEL_WITHOUT_VALUE, "Т1")),
    ("Т1 5450 ночь", failure(R.LABEL_WITHOUT_VALUE, "ночь")),
    ("полупик", failure(R.LABEL_WITHOUT_VALUE, "полупик")),
    ("ЛС", failure(R.LABEL_WITHOUT_VALUE, "ЛС")),
    ("Т1 5450 ЛС", failure(R.LABEL_WITHOUT_VALUE, "ЛС")),
    ("ПУ Т1 5450", failure(R.LABEL_WITHOUT_VALUE, "ПУ")),
    ("ЛС DAY123 5450", failure(R.LABEL_WITHOUT_VALUE, "ЛС")),
    ("1234567833 № Т1 5450", failure(R.LABEL_WITHOUT_VALUE, "№")),
    ("Т1 5450 Т1 2130", failure(R.REPEATED_ZONE, "Т1")),
    ("день 5450 пик 900", failure(R.REPEATED_ZONE, "пик")),
    ("Н640 ночь 640", failure(R.REPEATED_ZONE, "ночь")),
    ("Т1 5450 2130", failure(R.MIXED_LABELS, "2130")),
    ("5550001112 Т1 5450 2130 Т2 100", failure(R.MIXED_LABELS, "2130")),
    ("REG", failure(R.COMMAND_ARGUMENT, "REG")),
    ("REG 5550001112", failure(R.COMMAND_ARGUMENT, "REG")),
    ("reg 5550001112 56", failure(R.COMMAND_ARGUMENT, "reg")),
    ("РЕГ 5550001112 5678 99", failure(R.COMMAND_ARGUMENT, "РЕГ")),
    ("REG ЛС", failure(R.COMMAND_ARGUMENT, "REG")),
    ("LAST 5550001112 5450", failure(R.COMMAND_ARGUMENT, "LAST")),
    ("LAST Т1", failure(R.COMMAND_ARGUMENT, "LAST")),
    ("HELP 5", failure(R.COMMAND_ARGUMENT, "HELP")),
    ("STOP 1234", failure(R.COMMAND_ARGUMENT, "STOP")),
    ("LAST 12З4", failure(R.GARBLED_NUMBER, "12З4")),
    ("REG 5550001112 56a8", failure(R.GARBLED_NUMBER, "56a8")),
]

CASES: list[tuple[str, ParsedMessage]] = (
    POSITIONAL + LABELLED + ACCOUNTS_AND_NOISE + NOISE + COMMANDS + FAILURES
)
