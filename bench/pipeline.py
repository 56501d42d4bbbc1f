"""Messages per second through the whole pipeline in-process on SQLite.

Each message is parsed, validated against the account's meter and previous
reading, stored (inbound, reading, reply) and answered, as `sms-gateway send`
does, but without process start-up. Three figures: one message at a time, 50 in
flight at once (how a server sees a burst: this is where group commit pays), and one
message every 5 ms (a steady 200/s: every message finds the threads asleep, and
on a VM waking them costs CPU of its own: the machine's wake-up cost is printed too).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._fixtures import (
    bench_time,
    phone_for,
    temp_dir,
    traffic,
    wake_up_cost_us,
    write_accounts,
)

ACCOUNTS = 20_000
MESSAGES = 3_000


async def run(concurrency: int, every_s: float = 0.0) -> tuple[float, float, Counter[str]]:
    from adapters.db.bulk import import_accounts
    from sms_gateway.bootstrap import build_gateway
    from sms_gateway.config import Settings
    from sms_gateway.domain.model import InboundSms

    folder = temp_dir()
    csv_path = folder / "accounts.csv"
    accounts = write_accounts(csv_path, ACCOUNTS)
    settings = Settings().replace(database={"url": f"sqlite+aiosqlite:///{folder}/bench.db"})
    gateway = await build_gateway(settings, migrate=True, clock=bench_time)
    await import_accounts(gateway.store, csv_path, settings.gateway.account_pattern, bench_time())
    texts = traffic(accounts)
    messages = [
        InboundSms("cli", phone_for(i), "7377", next(texts), bench_time()) for i in range(MESSAGES)
    ]
    outcomes: Counter[str] = Counter()
    queue: asyncio.Queue[InboundSms] = asyncio.Queue()
    for message in messages:
        queue.put_nowait(message)

    async def worker() -> None:
        while not queue.empty():
            reply = await gateway.pipeline.handle(queue.get_nowait())
            outcomes[str(reply.outcome)] += 1

    async def paced() -> None:
        # One message every `every_s`, on a schedule (not a pause after each reply).
        loop = asyncio.get_running_loop()
        due = loop.time()
        while not queue.empty():
            due += every_s
            reply = await gateway.pipeline.handle(queue.get_nowait())
            outcomes[str(reply.outcome)] += 1
            await asyncio.sleep(max(0.0, due - loop.time()))

    started = time.perf_counter()
    cpu_started = time.process_time()
    if every_s:
        await paced()
    else:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    # CPU per message (all threads): steadier than the rate on a noisy machine.
    cpu_per_message = (time.process_time() - cpu_started) / MESSAGES
    await gateway.aclose()
    return MESSAGES / elapsed, cpu_per_message, outcomes


def main() -> None:
    from sms_gateway.logs import configure_logging

    # Logged as serve logs (INFO, JSON), into /dev/null.
    configure_logging("INFO", "json", open(os.devnull, "w"))  # noqa: SIM115
    serial_rate, serial_cpu, outcomes = asyncio.run(run(1))
    concurrent_rate, concurrent_cpu, _ = asyncio.run(run(50))
    _, steady_cpu, _ = asyncio.run(run(1, every_s=0.005))
    sleep_us, handover_us = wake_up_cost_us()
    print(f"pipeline on SQLite, {MESSAGES} messages, {ACCOUNTS} accounts")
    print(f"  one at a time : {serial_rate:8.0f} messages/s  {serial_cpu * 1e6:5.0f} µs CPU each")
    print(
        f"  50 in flight  : {concurrent_rate:8.0f} messages/s  "
        f"{concurrent_cpu * 1e6:5.0f} µs CPU each"
    )
    print(f"  steady 200/s  : {'':>8}             {steady_cpu * 1e6:5.0f} µs CPU each")
    print(
        f"  this machine  : {sleep_us:.0f} µs of CPU per wake-up from a 5 ms sleep, "
        f"{handover_us:.0f} µs more per hand-over to a sleeping thread"
    )
    print("  outcome mix   : " + ", ".join(f"{k} {v}" for k, v in outcomes.most_common()))


if __name__ == "__main__":
    main()
