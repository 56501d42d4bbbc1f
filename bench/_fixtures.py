"""Shared bench helpers: a fresh SQLite gateway with many accounts and a realistic traffic mix."""

from __future__ import annotations

import random
import resource
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

HEADER = "account,meter_serial,zones,digits,phones,last_t1,last_t2,last_t3,last_read_on\n"


def write_accounts(path: Path, count: int) -> list[tuple[str, int]]:
    """count accounts, one meter each, a third of them two-zone; returns (account, zones)."""
    accounts = []
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER)
        for i in range(count):
            account = str(3_000_000_000 + i)
            zones = 2 if i % 3 == 0 else 1
            last = "1000,500," if zones == 2 else "1000,,"
            out.write(f"{account},{80_000_000 + i},{zones},6,,{last},2026-10-20\n")
            accounts.append((account, zones))
    return accounts


def traffic(accounts: list[tuple[str, int]], seed: int = 7) -> Iterator[str]:
    """Texts as subscribers send them: mostly valid in many shapes, some broken."""
    rng = random.Random(seed)
    while True:
        account, zones = rng.choice(accounts)
        t1, t2 = 1000 + rng.randint(10, 900), 500 + rng.randint(5, 400)
        roll = rng.random()
        if roll < 0.08:
            yield rng.choice(["привет", "12З4", f"{account}", "помощь", f"{account} abc"])
        elif zones == 1:
            yield rng.choice(
                [
                    f"{account} {t1}",
                    f"ЛС {account} показания {t1}",
                    f"{account}*{t1}",
                    f"{account}, {t1} квт",
                ]
            )
        else:
            yield rng.choice(
                [
                    f"{account} {t1} {t2}",
                    f"ЛС {account} Т1 {t1} Т2 {t2}",
                    f"{account} день {t1} ночь {t2}",
                    f"{account} Д{t1} Н{t2}",
                    f"{account} {t1}/{t2}",
                ]
            )


def phone_for(index: int) -> str:
    # Many phones, so the per-phone rate limit does not dominate the mix.
    return f"+7916{index % 1_000_000:07d}"


def bench_time() -> datetime:
    return datetime(2026, 11, 18, 9, 0, tzinfo=UTC)


def temp_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="smsgw-bench-"))


def latin_texts(accounts: list[tuple[str, int]], count: int, round_no: int) -> list[str]:
    """`count` valid readings in Latin-only shapes (the peer's burst sends latin1).

    The values rise with `round_no` (10 kWh a round, 900 kWh at most): the same phone
    sending again in a later round never sends the same text, which the SMPP
    adapter's dedupe would take for a redelivery and not answer."""
    rng = random.Random(round_no)
    base = 1000 + round_no % 90 * 10
    texts = []
    for _ in range(count):
        account, zones = rng.choice(accounts)
        t1 = base + rng.randint(0, 9)
        if zones == 1:
            shape = rng.choice(["{a} {t1}", "{a}*{t1}", "LS {a} {t1} kwh"])
        else:
            shape = rng.choice(["{a} {t1} {t2}", "{a} T1 {t1} T2 {t2}", "{a} {t1}/{t2}"])
        texts.append(shape.format(a=account, t1=t1, t2=500 + round_no % 90 * 5))
    return texts


def wake_up_cost_us(count: int = 300) -> tuple[float, float]:
    """What this machine charges in CPU for waking a thread from idle: (a sleep of 5 ms,
    a hand-over to another thread blocked on a condition every 5 ms), microseconds of
    this process's CPU each. Measured here, outside serve, before the run: on a VM a
    wake-up from idle can cost tens of times what it costs on bare metal, and at a
    steady rate serve's threads wake several times per MO."""

    def process_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    start = process_cpu()
    for _ in range(count):
        time.sleep(0.005)
    sleep_us = (process_cpu() - start) / count * 1e6

    condition = threading.Condition()
    turns = [0]

    def worker() -> None:
        with condition:
            for seen in range(1, count + 1):
                condition.wait_for(lambda seen=seen: turns[0] >= seen)  # type: ignore[misc]

    thread = threading.Thread(target=worker)
    thread.start()
    start = process_cpu()
    for _ in range(count):
        time.sleep(0.005)
        with condition:
            turns[0] += 1
            condition.notify()
    thread.join()
    handover_us = (process_cpu() - start) / count * 1e6 - sleep_us
    return sleep_us, handover_us


def cold_work_us(count: int = 200) -> tuple[float, float]:
    """The same small piece of Python work (dict look-ups and string formatting, about
    0.1 ms): (its thread CPU run back to back, its thread CPU just after a 5 ms sleep),
    microseconds, medians. On this VM the second was 1.6-4 times the first on
    2026-12-08, and the slowness lasts about a millisecond after the wake-up: at a
    steady 200 MO/s serve's work comes in such stretches, which is why an MO costs
    three to four times as much CPU as in a burst."""
    table = {str(i): (i, str(i) * 3) for i in range(2000)}
    keys = list(table)

    def work() -> int:
        total = 0
        for n in range(300):
            key = keys[(n * 7919) % len(keys)]
            number, text = table[key]
            total += number + len(f"{key}:{text}".upper())
        return total

    def timed() -> float:
        started = time.thread_time()
        work()
        return (time.thread_time() - started) * 1e6

    hot = [timed() for _ in range(count)]
    cold = []
    for _ in range(count):
        time.sleep(0.005)
        cold.append(timed())
    return statistics.median(hot), statistics.median(cold)


def python_speed() -> float:
    """CPU µs for sum(range(100)), best of five runs, to compare figures across machines.

    CPython 3.11 on a recent desktop or laptop core takes roughly 0.5-0.7 µs; a
    shared or throttled VM takes several times longer, and the parser slows alike.
    """
    runs = []
    for _ in range(5):
        started = time.process_time()
        for _ in range(20_000):
            sum(range(100))
        runs.append((time.process_time() - started) / 20_000 * 1e6)
    return min(runs)
