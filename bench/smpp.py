"""SMPP throughput and latency against the node-smpp SMSC, in one run.

1. raw:      a bare smpplib ESME (one thread, Client.listen) that acknowledges each
             deliver_sm and echoes it back as a submit_sm: the library's limit here.
2. adapter:  the SmppAdapter on in-memory ports (store and reply cost nothing): the
             adapter's own ceiling, to tell its overhead from the store's.
3. gateway:  the SmppAdapter on the full gateway (decode, parse, validate, book on
             SQLite, compose the reply, outbox, submit_sm).
4. steady:   the gateway at a paced 200 MO/s, for the MO->reply latency percentiles.
5. two binds: the gateway with two links to the SMSC in one group ([[smpp.links]],
             window 50 each), the SMSC spreading the burst over both binds: the rate
             and its ratio to one bind.

The SMSC (tests/smsc/peer.js) pushes valid readings, one subscriber number per MO,
with at most 50 deliver_sm unanswered, and times each MO to the submit_sm that answers
it. Usage: .venv/bin/python bench/smpp.py [--count 5000] [--steady 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.smpp import SmppAdapter  # noqa: E402
from sms_gateway.config import Settings  # noqa: E402
from sms_gateway.logs import configure_logging  # noqa: E402
from sms_gateway.runner import freeze_startup_heap, smpp_adapter  # noqa: E402
from tests.integration.smpp_support import SmscPeer, peer_problem, smpp_settings  # noqa: E402

SHORT_NUMBER = "7377"
WINDOW = 50
LINGER_MS: int | None = None
BENCH_NOW = datetime(2026, 11, 18, 9, 0, tzinfo=UTC)


def write_accounts(path: Path, first: int, count: int) -> list[str]:
    """One single-zone meter per account, last read a month ago at 1000 kWh."""
    accounts = [str(first + i) for i in range(count)]
    with path.open("w", encoding="utf-8") as out:
        out.write("account,meter_serial,zones,digits,phones,last_t1,last_t2,last_t3,last_read_on\n")
        for i, account in enumerate(accounts):
            out.write(
                f"{account},{70_000_000 + first % 1000 * 100_000 + i},1,6,,1000,,,2026-10-20\n"
            )
    return accounts


def raw_echo_esme(port: int, bound: threading.Event) -> None:
    """The bare smpplib ESME: ack + echo, nothing else."""
    from smpplib import client as smpplib_client
    from smpplib import exceptions

    client = smpplib_client.Client("127.0.0.1", port, timeout=5, allow_unknown_opt_params=True)
    client.logger.setLevel(logging.WARNING)

    def on_message(pdu: Any) -> int:
        client.send_message(
            source_addr_ton=5,
            source_addr_npi=0,
            source_addr=SHORT_NUMBER,
            dest_addr_ton=1,
            dest_addr_npi=1,
            destination_addr=pdu.source_addr.decode(),
            data_coding=pdu.data_coding,
            short_message=pdu.short_message,
        )
        return 0

    client.set_message_received_handler(on_message)
    client.set_message_sent_handler(lambda pdu: None)
    client.connect()
    client._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.bind_transceiver(system_id="raw", password="raw")
    bound.set()
    try:
        client.listen()
    except (exceptions.ConnectionError, OSError):
        pass  # the SMSC drops the session when the run is over
    finally:
        client.state = 1  # not "bound": the socket is already gone
        client.disconnect()


async def burst(
    peer: SmscPeer, texts: list[str], prefix: str, rate: float = 0, all_sessions: bool = False
) -> dict:
    # CPU of this whole process per MO (every thread): steadier than the rate on a
    # noisy machine, and the ESME under test is the only thing running in it.
    cpu_started = time.process_time()
    await peer.command(
        "burst",
        count=len(texts),
        window=WINDOW,
        rate=rate,
        destination_addr=SHORT_NUMBER,
        source_prefix=prefix,
        texts=texts,
        all_sessions=all_sessions,
    )
    done = await peer.wait_for(lambda e: e.get("event") == "burst_done", timeout=600)
    peer.events.clear()
    done["cpu_us"] = (time.process_time() - cpu_started) / len(texts) * 1e6
    return done


async def run_raw(peer: SmscPeer, count: int) -> dict:
    bound = threading.Event()
    thread = threading.Thread(target=raw_echo_esme, args=(peer.port, bound), daemon=True)
    thread.start()
    assert bound.wait(10), "raw ESME did not bind"
    texts = [f"{1_000_000_000 + i} 1050" for i in range(count)]
    result = await burst(peer, texts, "7915")
    await peer.command("drop")
    await asyncio.to_thread(thread.join, 10)
    return result


async def run_memory_adapter(peer: SmscPeer, count: int) -> dict:
    from tests.integration.smpp_support import MemoryGateway

    ports = MemoryGateway(reply=lambda inbound: "Prinyato: " + inbound.text)
    adapter = SmppAdapter(
        smpp_settings(peer.port, window=WINDOW, max_send_rate=100_000.0),
        SHORT_NUMBER,
        ports,
        ports,
    )
    ports.on_reply_queued = adapter.notify_outbox
    await adapter.start()
    await peer.wait_bound()
    try:
        return await burst(peer, [f"{3_000_000_000 + i} 1050" for i in range(count)], "7925")
    finally:
        await adapter.stop(5.0)
        await peer.wait_for(lambda e: e.get("event") == "close", timeout=5)


def two_binds(port: int) -> Any:
    """Two links to one SMSC, one group, window 50 each, as [[smpp.links]] sets them."""
    import dataclasses

    from sms_gateway.config import link_from_defaults

    base = smpp_settings(port, window=50, max_send_rate=100_000.0)
    return dataclasses.replace(
        base,
        links=tuple(
            link_from_defaults(base, {"name": f"bind_{n}", "group": "bench", "system_id": f"b{n}"})
            for n in (1, 2)
        ),
    )


async def run_gateway(
    peer: SmscPeer, count: int, steady: int, two: int
) -> tuple[dict, dict, dict | None, int]:
    from adapters.db.bulk import import_accounts
    from sms_gateway.bootstrap import build_gateway

    workdir = Path(tempfile.mkdtemp(prefix="smsgw-bench-smpp-"))
    database: dict[str, Any] = {"url": f"sqlite+aiosqlite:///{workdir / 'gateway.db'}"}
    if LINGER_MS is not None:
        database["commit_linger_ms"] = LINGER_MS
    settings = Settings().replace(database=database, gateway={"short_number": SHORT_NUMBER})
    gateway = await build_gateway(settings, migrate=True, clock=lambda: BENCH_NOW)
    fast_accounts = write_accounts(workdir / "fast.csv", 2_000_000_000, count)
    steady_accounts = write_accounts(workdir / "steady.csv", 2_100_000_000, steady)
    two_accounts = write_accounts(workdir / "two.csv", 2_200_000_000, two)
    for name in ("fast.csv", "steady.csv", "two.csv")[: 3 if two else 2]:
        await import_accounts(
            gateway.store, workdir / name, settings.gateway.account_pattern, BENCH_NOW
        )
    # Wired and started as serve does it.
    adapter = smpp_adapter(
        gateway, smpp_settings(peer.port, window=WINDOW, max_send_rate=100_000.0)
    )
    await adapter.start()
    freeze_startup_heap()
    await peer.wait_bound()
    try:
        fast = await burst(peer, [f"{a} 1050" for a in fast_accounts], "7926")
        paced = await burst(peer, [f"{a} 1060" for a in steady_accounts], "7936", rate=200)
    finally:
        await adapter.stop(5.0)
    doubled: dict | None = None
    if two:
        await peer.wait_for(lambda e: e.get("event") == "close", timeout=5)
        peer.events.clear()
        adapter = smpp_adapter(gateway, two_binds(peer.port))
        await adapter.start()
        await peer.wait_bound(count=2)
        try:
            texts = [f"{a} 1070" for a in two_accounts]
            doubled = await burst(peer, texts, "7946", all_sessions=True)
        finally:
            await adapter.stop(5.0)
    from sqlalchemy import func, select

    from adapters.db.schema import readings

    async with gateway.store.reader() as tx:
        booked = int(
            (await tx.conn.execute(select(func.count()).select_from(readings))).scalar_one()
        )
    await gateway.aclose()
    return fast, paced, doubled, booked


def line(name: str, result: dict) -> str:
    return (
        f"{name:<22} {result['rate']:8.0f} MO/s  p50 {result['p50_ms']:6.1f} ms  "
        f"p99 {result['p99_ms']:6.1f} ms  max {result['max_ms']:6.1f} ms  "
        f"ack p50 {result['ack_p50_ms']:5.1f} ms  CPU {result['cpu_us']:4.0f} µs/MO  "
        f"({result['replies']}/{result['count']} replied, {result['nacked']} nacked)"
    )


async def main() -> None:
    global WINDOW, LINGER_MS
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=5000, help="MO per throughput run")
    parser.add_argument("--gateway-count", type=int, default=0, help="MO for the gateway run")
    parser.add_argument("--steady", type=int, default=1000, help="MO in the 200 MO/s run")
    parser.add_argument("--two-binds", type=int, default=-1, help="MO for the two-bind run")
    parser.add_argument(
        "--linger-ms",
        type=int,
        default=None,
        help="[database] commit_linger_ms of the gateway runs (default: the built-in 10)",
    )
    parser.add_argument(
        "--window", type=int, default=WINDOW, help="deliver_sm the SMSC leaves unanswered"
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        help="serve's logging set-up at this level, rendered as JSON into /dev/null",
    )
    args = parser.parse_args()
    WINDOW = args.window
    LINGER_MS = args.linger_ms
    problem = peer_problem()
    if problem:
        raise SystemExit(problem)
    # Logged as serve logs (INFO by default, JSON), into /dev/null: the lines cost
    # what they cost in production, a console would not be measured with them.
    configure_logging(args.log_level, "json", open(os.devnull, "w"))  # noqa: SIM115
    peer = await SmscPeer.start()
    try:
        started = time.monotonic()
        raw = await run_raw(peer, args.count)
        memory = await run_memory_adapter(peer, args.count)
        gateway_count = args.gateway_count or args.count
        two = gateway_count if args.two_binds < 0 else args.two_binds
        fast, paced, doubled, booked = await run_gateway(peer, gateway_count, args.steady, two)
    finally:
        await peer.close()
    print(
        f"SMPP bench: window {WINDOW}, {args.count} MO per run, one core per process, "
        f"logging at {args.log_level.upper()}"
    )
    print(line("raw smpplib echo", raw))
    print(line("adapter, memory ports", memory))
    print(line(f"gateway (SQLite) x{gateway_count}", fast))
    print(line("gateway @ 200 MO/s", paced))
    if doubled is not None:
        print(line(f"two binds x{two}", doubled))
    print(f"adapter / raw ratio    {memory['rate'] / raw['rate']:.2f}")
    print(f"gateway / raw ratio    {fast['rate'] / raw['rate']:.2f}")
    print(f"raw / gateway CPU      {raw['cpu_us'] / fast['cpu_us']:.2f} (CPU per MO, inverted)")
    if doubled is not None:
        print(f"two binds / one bind   {doubled['rate'] / fast['rate']:.2f}")
    print(f"readings booked        {booked} of {gateway_count + args.steady + two}")
    print(f"total bench time       {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    asyncio.run(main())
