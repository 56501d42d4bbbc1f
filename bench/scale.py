"""MO->reply per second with one and with two gateway instances on PostgreSQL.

Each instance is a real `sms-gateway serve` process with its own SMPP bind to the
same node-smpp SMSC, which delivers a queue of valid readings (store and forward,
window 50 per bind, round robin over the binds) and counts the replies. Both runs
use a fresh database on the local PostgreSQL. Usage:

    .venv/bin/python bench/scale.py [--count 4000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.serve_support import ID_TLV, Serve, accounts_csv, cli, write_config  # noqa: E402
from tests.integration.smpp_support import SmscPeer, peer_problem  # noqa: E402

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"
FIRST_ACCOUNT = 5_000_000_000


async def admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def run(instances: int, count: int, workdir: Path) -> float:
    name = f"smsgw_scale_{uuid.uuid4().hex[:8]}"
    await admin(f'CREATE DATABASE "{name}"')
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    peer = await SmscPeer.start()
    servers: list[Serve] = []
    try:
        configs = [
            write_config(workdir / f"{name}-{i}.toml", url, peer.port) for i in range(instances)
        ]
        await cli(
            configs[0], "accounts", "import",
            str(accounts_csv(workdir / f"{name}.csv", count, FIRST_ACCOUNT)),
        )  # fmt: skip
        servers = [Serve(c, workdir / f"{c.stem}.log").start() for c in configs]
        await peer.wait_bound(count=instances, timeout=60)
        texts = [f"{FIRST_ACCOUNT + i} 1100" for i in range(count)]
        started = time.monotonic()
        await peer.command(
            "queue", count=count, window=50, texts=texts, destination_addr="7377", id_tlv=ID_TLV
        )
        done = await peer.wait_for(lambda e: e.get("event") == "queue_done", timeout=900)
        elapsed = time.monotonic() - started
        assert done["answered"] == count, done
        return count / elapsed
    finally:
        for server in servers:
            server.stop()
        await peer.close()
        await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=4000, help="MO per run")
    args = parser.parse_args()
    problem = peer_problem()
    if problem:
        raise SystemExit(problem)
    workdir = Path(tempfile.mkdtemp(prefix="smsgw-scale-"))
    one = await run(1, args.count, workdir)
    two = await run(2, args.count, workdir)
    print(f"scale on PostgreSQL, {args.count} MO per run, window 50 per bind")
    print(f"  one instance  : {one:8.0f} MO/s")
    print(f"  two instances : {two:8.0f} MO/s   ({two / one:.2f}x)")


if __name__ == "__main__":
    asyncio.run(main())
