"""Accounts import and readings export at utility scale, on SQLite and PostgreSQL.

Generates an accounts file of `--rows` meters (a third two-zone, half with a phone,
one account in ten with a second meter), then for each database:

- a fresh import into an empty database;
- the same file again with 1% of the rows changed (a nightly delta);
- on SQLite, MO->reply latency of a steady SMS stream (`--sms-rate`, 50/s) through
  the full gateway (SMPP adapter against the node-smpp SMSC, as bench/smpp.py runs
  it), while a fresh import of the same size runs into that database: p50/p99 and
  how many MO were refused (deliver_sm_resp not OK);
- the export of one reading per meter, when `--export`: `readings export` to a file,
  then `GET /api/readings/export` from `sms-gateway serve` (its own process, on the
  same database), the response streamed and its rows counted by this process.

Imports and exports run as `sms-gateway` subprocesses; their peak RSS is read from
wait4(). For the HTTP export, the server's RSS before the request and its peak during
it: the kernel's high-water mark, reset just before the request (/proc/PID/clear_refs),
and the largest RSS sampled every 20 ms as a check. Usage:

    .venv/bin/python bench/import.py [--rows 1000000] [--backend sqlite,postgresql]
                                     [--sms-rate 50] [--export]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HEADER = "account,meter_serial,zones,digits,phones,last_t1,last_t2,last_t3,last_read_on\n"
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"
FIRST_ACCOUNT = 4_000_000_000
SHORT_NUMBER = "7377"


def write_accounts_file(path: Path, rows: int, changed_every: int = 0) -> None:
    """`rows` meters; with changed_every=100, every 100th row has a new reading (1%).

    Phones are spelled as billing systems spell them: mostly +7..., one in ten
    8 (9xx) xxx-xx-xx, which takes the slow road through phonenumbers."""
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER)
        lines = []
        for i in range(rows):
            account = FIRST_ACCOUNT + i * 10 // 11
            zones = 2 if i % 3 == 0 else 1
            t1, read_on = 10_000 + i % 5000, "2026-10-20"
            if changed_every and i % changed_every == changed_every // 2:
                t1, read_on = t1 + 137, "2026-11-05"
            last = f"{t1},{3000 + i % 700}," if zones == 2 else f"{t1},,"
            phone = ""
            if i % 2 == 0:
                number = i // 2 % 10_000_000
                phone = (
                    f"8 (916) {number // 10_000:03d}-{number // 100 % 100:02d}-{number % 100:02d}"
                    if i % 20 == 0
                    else f"+7926{number:07d}"
                )
                if "(" in phone:
                    phone = f'"{phone}"'
            lines.append(f"{account},{90_000_000 + i},{zones},6,{phone},{last},{read_on}\n")
            if len(lines) >= 10_000:
                out.writelines(lines)
                lines.clear()
        out.writelines(lines)


@dataclass
class Run:
    seconds: float
    peak_rss_mb: float
    output: str


def run_cli(config: Path, *args: str) -> Run:
    """An `sms-gateway` subprocess: wall time and stdout."""
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "sms_gateway", *args, "--config", str(config)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = process.communicate()
    seconds = time.monotonic() - started
    if process.returncode != 0:
        raise SystemExit(f"sms-gateway {' '.join(args)} failed:\n{err}")
    return Run(seconds, 0.0, out.strip())


def run_cli_rss(config: Path, *args: str) -> Run:
    """As run_cli, and the subprocess's own peak RSS (wait4 gives its rusage alone,
    where RUSAGE_CHILDREN would be the maximum over every child so far)."""
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "sms_gateway", *args, "--config", str(config)],
            cwd=ROOT,
            stdout=out,
            stderr=err,
        )
        _pid, status, usage = os.wait4(process.pid, 0)
        seconds = time.monotonic() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if process.returncode != 0:
            raise SystemExit(f"sms-gateway {' '.join(args)} failed:\n{err.read()}")
        # ru_maxrss is in KiB on Linux.
        return Run(seconds, usage.ru_maxrss / 1024, out.read().strip())


def write_config(path: Path, url: str, smsc_port: int = 0, http_port: int = 8080) -> Path:
    smpp = (
        f"""
[smpp]
enabled = true
port = {smsc_port}
password = "secret"
window = 50
max_send_rate = 5000
"""
        if smsc_port
        else ""
    )
    path.write_text(
        f"""
[gateway]
short_number = "{SHORT_NUMBER}"
locale = "en"
[database]
url = "{url}"
upgrade_on_start = true
[http]
port = {http_port}
[rules]
window_start_day = 1
window_end_day = 31
rate_limit_per_phone_per_hour = 1000
{smpp}""",
        encoding="utf-8",
    )
    return path


async def pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def fresh_database(backend: str, workdir: Path) -> tuple[str, str]:
    """(SQLAlchemy URL, name) of a new empty database."""
    name = f"smsgw_import_{uuid.uuid4().hex[:8]}"
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{workdir / name}.db", name
    asyncio.run(pg_admin(f'CREATE DATABASE "{name}"'))
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}", name


def drop_database(backend: str, name: str) -> None:
    if backend == "postgresql":
        asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:9,.0f} rows/s"


async def book_one_reading_per_meter(url: str) -> None:
    """A month of readings, one per meter, written straight in SQL (the SMS path
    would take an hour at the pipeline's rate)."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    submitted = "2026-11-18 09:00:00" + (".000000" if url.startswith("sqlite") else "")
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO readings (meter_id, period, t1, t2, t3, status, submitted_at, "
                "channel) SELECT id, '2026-11', last_t1 + 50, "
                "CASE WHEN zones > 1 THEN last_t2 + 20 END, NULL, 'accepted', "
                f"'{submitted}', 'smpp' FROM meters"
            )
        )
    await engine.dispose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rss_mb(pid: int, field: str) -> float:
    """VmRSS or VmHWM of a process, in MB (the kernel gives kB)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class HttpExport:
    seconds: float
    rows: int
    megabytes: float
    rss_before_mb: float
    peak_rss_mb: float  # the kernel's high-water mark during the request (0: not reset)
    sampled_max_mb: float


def http_export(config: Path, port: int, period: str) -> HttpExport:
    """`sms-gateway serve` on the bench's database; GET /api/readings/export streamed
    to the end in 1 MB reads, its rows counted; wall time from the request to the last
    byte, and the server's RSS."""
    token = secrets.token_urlsafe(16)
    errors = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(
        [sys.executable, "-m", "sms_gateway", "serve", "--config", str(config)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=errors,
        env={**os.environ, "SMS_GATEWAY__OPS__TOKEN": token},
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError as exc:
                if server.poll() is not None or time.monotonic() > deadline:
                    errors.seek(0)
                    raise SystemExit(f"serve did not start:\n{errors.read()}") from exc
                time.sleep(0.2)
        time.sleep(1.0)  # past start-up: its allocations are not the export's
        rss_before = _rss_mb(server.pid, "VmRSS")
        try:
            with open(f"/proc/{server.pid}/clear_refs", "w", encoding="ascii") as refs:
                refs.write("5")  # resets VmHWM to the current RSS
            hwm_reset = True
        except OSError:
            hwm_reset = False
        sampled = [rss_before]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.02):
                sampled.append(_rss_mb(server.pid, "VmRSS"))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/readings/export?period={period}",
            headers={"Authorization": f"Bearer {token}"},
        )
        lines = size = 0
        started = time.monotonic()
        with urllib.request.urlopen(request, timeout=300) as response:
            while block := response.read(1 << 20):
                lines += block.count(b"\n")
                size += len(block)
        seconds = time.monotonic() - started
        done.set()
        sampler.join()
        peak = _rss_mb(server.pid, "VmHWM") if hwm_reset else 0.0
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        errors.close()
    return HttpExport(seconds, lines - 1, size / 1e6, rss_before, peak, max(sampled))


def bench_imports(
    backend: str, rows: int, full: Path, delta: Path, workdir: Path, export: bool
) -> tuple[list[str], dict[str, float]]:
    """Report lines, and the seconds of the fresh import and of the delta."""
    url, name = fresh_database(backend, workdir)
    port = _free_port()
    config = write_config(workdir / f"{name}.toml", url, http_port=port)
    try:
        run_cli(config, "db", "upgrade")
        fresh = run_cli_rss(config, "accounts", "import", str(full))
        again = run_cli_rss(config, "accounts", "import", str(delta))
        exported = over_http = None
        if export:
            asyncio.run(book_one_reading_per_meter(url))
            target = workdir / f"{name}-export.csv"
            exported = run_cli_rss(
                config, "readings", "export", "--period", "2026-11", "--output", str(target)
            )
            target.unlink()
            over_http = http_export(config, port, "2026-11")
    finally:
        drop_database(backend, name)
    export_lines = []
    if exported is not None:
        export_lines.append(
            f"{backend:<10} export        {exported.seconds:6.1f} s "
            f"{rate(rows, exported.seconds)}  peak RSS {exported.peak_rss_mb:5.0f} MB  "
            f"({exported.output})"
        )
    if over_http is not None:
        peak = f"{over_http.peak_rss_mb:5.0f} MB" if over_http.peak_rss_mb else "n/a"
        export_lines.append(
            f"{backend:<10} HTTP export   {over_http.seconds:6.1f} s "
            f"{rate(over_http.rows, over_http.seconds)}  server RSS "
            f"{over_http.rss_before_mb:.0f} MB before, peak {peak} during "
            f"(sampled max {over_http.sampled_max_mb:.0f} MB); {over_http.rows:,} rows, "
            f"{over_http.megabytes:.0f} MB"
        )
    return [
        f"{backend:<10} fresh import  {fresh.seconds:6.1f} s {rate(rows, fresh.seconds)}  "
        f"peak RSS {fresh.peak_rss_mb:5.0f} MB",
        *(f"{'':<12}  {line}" for line in fresh.output.splitlines()[1:]),
        f"{backend:<10} 1% delta      {again.seconds:6.1f} s {rate(rows, again.seconds)}  "
        f"peak RSS {again.peak_rss_mb:5.0f} MB",
        *(f"{'':<12}  {line}" for line in again.output.splitlines()[1:]),
        *export_lines,
    ], {"fresh import": fresh.seconds, "1% delta": again.seconds}


async def import_during_sms(
    full: Path, delta: Path, workdir: Path, sms_rate: float, seconds: dict[str, float]
) -> list[str]:
    """SQLite: the gateway (in this process, SMPP against node-smpp) answers a steady
    stream of readings while `sms-gateway accounts import` runs in another process.
    The stream starts with the import and lasts as long as the import took alone
    (`seconds`), so its percentiles are those of MO sent while the import ran."""
    from adapters.db.bulk import import_accounts
    from sms_gateway.bootstrap import build_gateway
    from sms_gateway.config import Settings
    from sms_gateway.logs import configure_logging
    from sms_gateway.runner import smpp_adapter
    from tests.integration.smpp_support import SmscPeer, peer_problem, smpp_settings

    problem = peer_problem()
    if problem:
        return [f"sqlite     SMS during import: skipped, {problem}"]
    configure_logging("INFO", "json", open(os.devnull, "w"))  # noqa: SIM115
    url, name = fresh_database("sqlite", workdir)
    config = write_config(workdir / f"{name}.toml", url)
    settings = Settings().replace(
        database={"url": url},
        gateway={"short_number": SHORT_NUMBER},
        rules={"window_start_day": 1, "window_end_day": 31},
    )
    gateway = await build_gateway(settings, migrate=True)
    subscribers = workdir / "subscribers.csv"
    with subscribers.open("w", encoding="utf-8") as handle:
        handle.write(HEADER)
        for i in range(2000):
            handle.write(f"{3_000_000_000 + i},{70_000_000 + i},1,6,,1000,,,2026-10-20\n")
    await import_accounts(
        gateway.store, subscribers, settings.gateway.account_pattern, datetime.now(UTC)
    )
    peer = await SmscPeer.start()
    adapter = smpp_adapter(gateway, smpp_settings(peer.port, window=50, max_send_rate=5000.0))
    await adapter.start()
    await peer.wait_bound()
    out = []
    try:
        for label, path, prefix in (("fresh import", full, "7911"), ("1% delta", delta, "7912")):
            count = max(int(sms_rate * seconds[label]), 50)
            texts = [f"{3_000_000_000 + i % 2000} {1100 + i % 800}" for i in range(count)]
            await peer.command(
                "burst", count=count, window=50, rate=sms_rate,
                destination_addr=SHORT_NUMBER, source_prefix=prefix, texts=texts,
            )  # fmt: skip
            started = time.monotonic()
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "sms_gateway", "accounts", "import", str(path),
                "--config", str(config), cwd=ROOT,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )  # fmt: skip
            _stdout, stderr = await process.communicate()
            took = time.monotonic() - started
            if process.returncode != 0:
                raise SystemExit(f"import failed during the SMS stream:\n{stderr.decode()}")
            done = await peer.wait_for(lambda e: e.get("event") == "burst_done", timeout=900)
            peer.events.clear()
            out.append(
                f"sqlite     SMS during {label} ({took:.1f} s, {sms_rate:.0f} MO/s for "
                f"{count / sms_rate:.0f} s): MO->reply p50 {done['p50_ms']:.1f} ms, "
                f"p99 {done['p99_ms']:.1f} ms, max {done['max_ms']:.1f} ms; "
                f"{done['replies']}/{done['count']} answered, {done['nacked']} refused"
            )
    finally:
        await adapter.stop(5.0)
        await peer.close()
        await gateway.aclose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="meters in the file")
    parser.add_argument("--backend", default="sqlite,postgresql", help="comma-separated")
    parser.add_argument("--sms-rate", type=float, default=50.0, help="MO/s during the import")
    parser.add_argument("--no-sms", action="store_true", help="skip the SMS-during-import run")
    parser.add_argument("--export", action="store_true", help="also time the readings export")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="smsgw-bench-import-"))
    full, delta = workdir / "accounts.csv", workdir / "accounts-delta.csv"
    started = time.monotonic()
    write_accounts_file(full, args.rows)
    write_accounts_file(delta, args.rows, changed_every=100)
    print(
        f"accounts file: {args.rows:,} meters, {full.stat().st_size / 1e6:.0f} MB, "
        f"written in {time.monotonic() - started:.1f} s; load {os.getloadavg()[0]:.2f}"
    )
    timings: dict[str, dict[str, float]] = {}
    for backend in args.backend.split(","):
        lines, timings[backend] = bench_imports(
            backend, args.rows, full, delta, workdir, args.export
        )
        for line in lines:
            print(line, flush=True)
    if not args.no_sms and "sqlite" in timings:
        stream = import_during_sms(full, delta, workdir, args.sms_rate, timings["sqlite"])
        for line in asyncio.run(stream):
            print(line, flush=True)
    print(f"load after the run: {os.getloadavg()[0]:.2f}")
    # The files and SQLite databases of a million-meter run take about 600 MB.
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
