"""How many SMS texts per second the grammar reads, on one core.

    python bench/parse.py [seconds]

The mix is what the short number receives: about 80% readings and commands in the
many formats subscribers use, a third of them with the noise of issue 11 (mail-app
signatures, names, phone numbers, wishes, typos, transliteration, accounts in groups,
glued labels, other scripts' digits, several accounts in one SMS; one noisy text in
five carries a made-up word the vocabulary has never seen, so the typo search runs
uncached), and about 20% texts that fail (garbled numbers, labels without values,
long texts). Every text is distinct, so nothing is
measured from a warm cache of results. The parser is built before timing starts.
The default engine (lark-cython) is timed first, then plain Lark, the fallback.
"""

from __future__ import annotations

import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._fixtures import python_speed
from grammar import MessageParser
from grammar.parser import MAX_TEXT_LENGTH
from grammar.vocabulary import Vocabulary

ACCOUNT_PATTERN = r"\d{10,12}|[A-Z]{2,4}\d{3,10}"
MIX_SIZE = 5000


def _account(rng: random.Random) -> str:
    if rng.random() < 0.1:
        return rng.choice(["ACC", "АСС", "AB", "KT"]) + str(rng.randint(100, 99999))
    return str(rng.randint(10**9, 10**12 - 1))


def _reading(rng: random.Random) -> str:
    reading = str(rng.randint(0, 99999))
    return reading + rng.choice(["", "", "", ",5", ".25", " кВт", "квт.ч"])


def _valid(rng: random.Random) -> str:
    account = _account(rng)
    day, night, semi = (_reading(rng) for _ in range(3))
    greeting = rng.choice(["", "", "", "Здравствуйте! ", "Добрый день, ", "привет "])
    thanks = rng.choice(["", "", "", " Спасибо", ". Спасибо!", " благодарю"])
    body = rng.choice(
        [
            f"{account} {day}",
            f"{account} {day}",
            f"{account} {day} {night}",
            f"{account} {day}/{night}",
            f"{account}*{day}",
            f"{account}\n{day}\n{night}",
            f"{account} {day} {night} {semi}",
            f"ЛС {account} {day}",
            f"лс№{account} показания {day}",
            f"лицевой счет {account} пок. {day}",
            f"ЛС {account} Т1 {day} Т2 {night}",
            f"{account} t1={day};t2={night}",
            f"{account} день {day} ночь {night}",
            f"{account} Д{day} Н{night}",
            f"{account} пик {day} ночь {night} полупик {semi}",
            f"{account} П{day} ПП{semi} Н{night}",
            f"{account} #{rng.randint(10**7, 10**8 - 1)} {day}",
            f"{account} ПУ {rng.randint(1000, 9999)} {day}",
            f"REG {account} {rng.randint(1000, 9999)}",
            f"LAST {account}",
            rng.choice(["HELP", "помощь", "?", "0", "STOP", "СТАРТ", "ИНФО"]),
        ]
    )
    return greeting + body + thanks


_SURNAMES = [
    "Иванов", "Петрова", "Сидоров", "Кузнецова", "Смирнов", "Попова", "Васильев",
    "Морозова", "Новиков", "Волкова", "Соловьёв", "Лебедева", "Козлов", "Егорова",
]  # fmt: skip
_NOISE = [
    "\nОтправлено с iPhone", "\nSent from my Galaxy", "\n--\n{name} {initial}.{initial}.",
    "\nС уважением, {name}", " тел. 8-916-{a}-{b}-{c}", " +7 (903) {a}-{b}-{c}",
    " Хорошего дня!", " Спасибо большое", " {name}", " почему так дорого?",
    " за октябрь 2026 г.", " 😊",
]  # fmt: skip
_ARABIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


def _made_up_word(rng: random.Random) -> str:
    return "".join(rng.choice("абвгдежзиклмнопрстуфхцчшэюя") for _ in range(rng.randint(4, 9)))


def _noisy(rng: random.Random) -> str:
    account = str(rng.randint(10**9, 10**10 - 1))
    day, night = str(rng.randint(100, 99999)), str(rng.randint(100, 99999))
    name = rng.choice(_SURNAMES)
    body = rng.choice(
        [
            f"поазания лецевой счот {account} {day}",
            f"Показания {account} {day}",
            f"LS {account} pokazaniya {day} kvt",
            f"schet {account} den {day} noch {night}",
            f"{account[:3]}-{account[3:6]}-{account[6:]} {day}",
            f"ЛС {account[:3]} {account[3:6]} {account[6:]} Т1 {day} Т2 {night}",
            f"№{account} {day}",
            f"{account}Д{day}Н{night}",
            f"{account} Т2 (ночь) {night} Т1 (день) {day}",
            f"1) ЛС {account}\n2) {day}",
            f"{account} {day.translate(_ARABIC)}",
            f"ЛС {account} {day} ЛС {rng.randint(10**9, 10**10 - 1)} {night}",
            f"{account} {day} кВт*ч",
            "как передать показания?",
        ]
    )
    noise = rng.choice(_NOISE).format(
        name=name,
        initial=rng.choice("АБВГДЕИКЛМНОПРСТ"),
        a=rng.randint(100, 999),
        b=rng.randint(10, 99),
        c=rng.randint(10, 99),
    )
    if rng.random() < 0.2:
        noise += " " + _made_up_word(rng)
    return rng.choice(["", "Здравствуйте! ", "Добрый день, "]) + body + noise


def _broken(rng: random.Random) -> str:
    account = _account(rng)
    reading = str(rng.randint(100, 99999))
    garbled = reading[:2] + rng.choice("ЗOlоб") + reading[2:]
    return rng.choice(
        [
            f"{account} {garbled}",
            f"{garbled}",
            f"{account} {reading} кошка",
            f"Т1 Т2 {reading}",
            f"{account} Т1 {reading} Т1 {reading}",
            f"{account} Т1 {reading} {reading}",
            f"REG {account}",
            "спасибо",
            "",
            "Здравствуйте, подскажите пожалуйста как передать показания " * 10,
        ]
    )


def build_mix(seed: int = 20240501) -> list[str]:
    rng = random.Random(seed)
    mix: set[str] = set()
    while len(mix) < MIX_SIZE:
        roll = rng.random()
        mix.add(_valid(rng) if roll < 0.55 else _noisy(rng) if roll < 0.8 else _broken(rng))
    texts = sorted(mix)
    rng.shuffle(texts)
    return texts


def measure(
    message_parser: MessageParser, texts: list[str], seconds: float
) -> tuple[int, float, float]:
    """Messages parsed, CPU seconds and wall seconds of about `seconds` of CPU time."""
    parsed = 0
    # CPU time of this process: what one core spends, whatever else runs on the machine.
    started = time.process_time()
    wall_started = time.perf_counter()
    while time.process_time() - started < seconds:
        for text in texts[: len(texts) // 5]:
            message_parser.parse(text)
        parsed += len(texts) // 5
    return parsed, time.process_time() - started, time.perf_counter() - wall_started


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    texts = build_mix()
    message_parser = MessageParser(ACCOUNT_PATTERN)
    kinds = Counter(type(message_parser.parse(text)).__name__ for text in texts)  # warm-up
    print(f"mix: {len(texts)} distinct texts, " + ", ".join(f"{k} {v}" for k, v in kinds.items()))

    parsed, cpu, wall = measure(message_parser, texts, seconds)
    print(f"{parsed} messages in {cpu:.2f} s CPU ({wall:.2f} s wall)")
    print(f"{parsed / cpu:,.0f} messages/s on one core, {cpu / parsed * 1e6:.1f} µs per message")

    # The same texts read by plain Lark, the fallback without lark-cython, right after:
    # other load on the machine changes both figures alike, so their ratio holds.
    plain_lark = MessageParser(ACCOUNT_PATTERN, cython=False)
    for text in texts:
        plain_lark.parse(text)
    plain_parsed, plain_cpu, _ = measure(plain_lark, texts, seconds)
    print(
        f"plain Lark (fallback): {plain_parsed / plain_cpu:,.0f} messages/s, "
        f"lark-cython reads {parsed / cpu / (plain_parsed / plain_cpu):.1f}x as many"
    )
    # The loop above reads each text many times, so a made-up word is looked up once
    # and then cached; what the first subscriber to type one costs, uncached:
    vocabulary = Vocabulary.default()
    guess = Vocabulary.kind_of.__wrapped__  # the lookup without its cache
    rng = random.Random(7)
    words = [_made_up_word(rng) for _ in range(2000)]
    started = time.process_time()
    for word in words:
        guess(vocabulary, word)
    per_word = (time.process_time() - started) / len(words) * 1e6
    print(f"a word the vocabulary has never seen: {per_word:.0f} µs of CPU the first time")
    slowest, shape = slowest_message(message_parser, texts, rng)
    print(f"slowest single message: {slowest * 1000:.2f} ms ({shape})")
    print(f"this machine: sum(range(100)) takes {python_speed():.2f} µs of CPU (see python_speed)")


def worst_texts(rng: random.Random) -> dict[str, list[str]]:
    """Texts of the longest length read (480 characters) in the shapes that cost most:
    words never seen (each a fuzzy lookup), numbers only, labels only, glued runs."""

    def filled(piece: Callable[[], str]) -> str:
        text = ""
        while len(text) < MAX_TEXT_LENGTH:
            text += piece() + " "
        return text[:MAX_TEXT_LENGTH]

    return {
        "480 characters of words never seen": [
            filled(lambda: _made_up_word(rng)) for _ in range(20)
        ],
        "480 characters of numbers": [filled(lambda: _reading(rng)) for _ in range(20)],
        "480 characters of labels and readings": [
            filled(lambda: f"т{rng.randint(1, 3)} {_reading(rng)}") for _ in range(20)
        ],
        "480 characters of glued words and digits": [
            filled(lambda: f"{_made_up_word(rng)}{_reading(rng)}Д{_reading(rng)}")
            for _ in range(20)
        ],
    }


def slowest_message(
    message_parser: MessageParser, texts: list[str], rng: random.Random
) -> tuple[float, str]:
    """The longest wall time one parse took, each text read once, and its shape."""
    slowest, shape = 0.0, ""
    shapes = {"the realistic mix": texts, **worst_texts(rng)}
    for name, group in shapes.items():
        for text in group:
            started = time.perf_counter()
            message_parser.parse(text)
            elapsed = time.perf_counter() - started
            if elapsed > slowest:
                slowest, shape = elapsed, name
    return slowest, shape


if __name__ == "__main__":
    main()
