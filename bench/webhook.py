"""Signed Twilio webhook requests per second through the full pipeline on SQLite.

    .venv/bin/python bench/webhook.py [--requests 5000] [--concurrency 64]

The real aiohttp app runs in a child process on 127.0.0.1 (a random port) over a
fresh SQLite file with generated accounts; this process pre-signs every request with
twilio's RequestValidator (signing is Twilio's cost, not ours) and posts them with a
fixed number in flight. Every request is checked for 200 and a TwiML <Message>.
Goal: at least 1,000 requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from twilio.request_validator import RequestValidator

# The repository first, as the other benches do (also in the spawned server process).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

AUTH_TOKEN = "bench-auth-token"
PUBLIC_URL = "https://sms.example.ru/twilio/sms"
ACCOUNTS = 5000


def write_accounts(path: Path, count: int) -> None:
    lines = ["account,meter_serial,zones,digits,phones,last_t1,last_t2,last_t3,last_read_on"]
    for i in range(count):
        lines.append(f"{7000000000 + i},{10000000 + i},1,6,+7916{i:07d},1000,,,2026-10-20")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def serve(
    db_path: str, accounts_csv: str, stub: bool, ready: multiprocessing.Queue, stop_event
) -> None:
    """The server process: build the gateway like `serve` does and run the app."""
    from aiohttp import web

    from adapters.db.bulk import import_accounts
    from adapters.http import create_app
    from sms_gateway.bootstrap import build_gateway
    from sms_gateway.config import Settings
    from sms_gateway.logs import configure_logging
    from sms_gateway.runner import freeze_startup_heap

    async def main() -> None:
        # Logged as serve logs (INFO, JSON), into /dev/null: the lines' cost is
        # measured, a terminal's is not.
        configure_logging("INFO", "json", open(os.devnull, "w"))  # noqa: SIM115
        settings = Settings().replace(
            database={"url": f"sqlite+aiosqlite:///{db_path}"},
            twilio={"enabled": True, "auth_token": AUTH_TOKEN, "public_url": PUBLIC_URL},
        )
        gateway = await build_gateway(settings, migrate=True)
        # Inside the reading window so the pipeline books readings (the real write path).
        gateway.pipeline.clock = lambda: _window_now()
        await import_accounts(
            gateway.store, Path(accounts_csv), settings.gateway.account_pattern, _window_now()
        )
        if stub:
            _stub_pipeline(gateway)
        runner = web.AppRunner(create_app(gateway, link_state=lambda: "disabled"), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        freeze_startup_heap()  # as serve does once started
        ready.put(runner.addresses[0][1])
        while not stop_event.is_set():
            await asyncio.sleep(0.1)
        await runner.cleanup()
        await gateway.aclose()

    asyncio.run(main())


def _stub_pipeline(gateway) -> None:
    """Answer every message at once without the database: the HTTP layer's ceiling."""
    from sms_gateway.domain.model import Outcome, Reply

    async def handle(inbound):
        return Reply(Outcome.ACCEPTED, "Приняты показания ЛС 7000000000: Т1 1001 (+1).", 1, 2)

    gateway.pipeline.handle = handle


def _window_now() -> datetime:
    return datetime(2026, 11, 18, 9, 0, tzinfo=UTC)


def signed_requests(count: int, run: str) -> list[tuple[dict[str, str], str]]:
    validator = RequestValidator(AUTH_TOKEN)
    out = []
    for i in range(count):
        account = i % ACCOUNTS
        reading = 1000 + 1 + i // ACCOUNTS
        form = {
            "MessageSid": f"SM{run}{i:012d}",
            "From": f"+7916{account:07d}",
            "To": "+15005550006",
            "Body": f"{7000000000 + account} {reading}",
            "NumSegments": "1",
        }
        out.append((form, validator.compute_signature(PUBLIC_URL, form)))
    return out


async def fire(port: int, requests: list[tuple[dict[str, str], str]], concurrency: int):
    url = f"http://127.0.0.1:{port}/twilio/sms"
    latencies: list[float] = []
    failures: list[str] = []
    queue = iter(requests)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for form, signature in queue:
                started = time.perf_counter()
                async with session.post(
                    url, data=form, headers={"X-Twilio-Signature": signature}
                ) as response:
                    body = await response.text()
                latencies.append(time.perf_counter() - started)
                if response.status != 200 or "<Message" not in body:
                    failures.append(f"{response.status}: {body[:120]}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return elapsed, latencies, failures


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), its threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument(
        "--stub-pipeline",
        action="store_true",
        help="replace the pipeline by an instant answer: measures HTTP, signature and TwiML only",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-webhook-") as tmp:
        accounts_csv = Path(tmp) / "accounts.csv"
        write_accounts(accounts_csv, ACCOUNTS)
        context = multiprocessing.get_context("spawn")
        ready = context.Queue()
        stop = context.Event()
        server = context.Process(
            target=serve,
            args=(
                str(Path(tmp) / "gateway.db"),
                str(accounts_csv),
                args.stub_pipeline,
                ready,
                stop,
            ),
        )
        server.start()
        try:
            port = ready.get(timeout=120)
            asyncio.run(fire(port, signed_requests(args.warmup, "w"), args.concurrency))
            requests = signed_requests(args.requests, "m")
            server_cpu = cpu_seconds(server.pid)
            elapsed, latencies, failures = asyncio.run(fire(port, requests, args.concurrency))
            server_cpu = cpu_seconds(server.pid) - server_cpu
        finally:
            stop.set()
            server.join(timeout=30)
    if failures:
        raise SystemExit(f"{len(failures)} requests failed, first: {failures[0]}")
    latencies.sort()
    rate = len(latencies) / elapsed
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    what = "stub pipeline (HTTP layer only)" if args.stub_pipeline else "full pipeline, SQLite"
    print(
        f"webhook: {len(latencies)} signed requests, concurrency {args.concurrency}, "
        f"{what}: {rate:,.0f} requests/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms "
        "(goal 1,000/s)"
    )
    # The client shares the machine; the server's own CPU per request says what one
    # core could sustain were it alone (the database wait is not CPU and not counted).
    per_request_ms = server_cpu / len(latencies) * 1000
    print(
        f"server CPU {per_request_ms:.2f} ms per request (event loop + SQLite thread) "
        f"= {1000 / per_request_ms:,.0f} requests/s per fully used core; {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
