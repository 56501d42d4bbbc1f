"""Running real `sms-gateway serve` processes against the node-smpp SMSC peer.

Shared by the crash tests and bench/scale.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ID_TLV = 0x1410  # the vendor TLV the peer puts each MO's id in


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(
    path: Path,
    database_url: str,
    smsc_port: int,
    *,
    mo_id_tlv: bool = True,
    instance: str = "",
    response_timeout_s: float = 3,
    links: list[dict[str, object]] | None = None,
) -> Path:
    """The default claim_timeout_s and instance_dead_after_s, as a new user runs it.
    `links`: [[smpp.links]] tables (name, group, port, system_id, ...)."""
    tables = "".join(
        "[[smpp.links]]\n"
        + "".join(f"{key} = {json.dumps(value)}\n" for key, value in link.items())
        for link in links or ()
    )
    path.write_text(
        f"""
[gateway]
log_format = "json"
instance_name = "{instance}"
[database]
url = "{database_url}"
[http]
port = {_free_port()}
[rules]
# The real clock runs in these processes: a window over the whole month.
window_start_day = 1
window_end_day = 31
rate_limit_per_phone_per_hour = 1000
[smpp]
enabled = true
port = {smsc_port}
password = "secret"
reconnect_min_s = 0.1
reconnect_max_s = 0.5
response_timeout_s = {response_timeout_s}
window = 50
max_send_rate = 5000
mo_id_tlv = {ID_TLV if mo_id_tlv else 0}
{tables}""",
        encoding="utf-8",
    )
    return path


def accounts_csv(path: Path, count: int, first_account: int) -> Path:
    with path.open("w", encoding="utf-8") as out:
        out.write("account,meter_serial,zones,digits,phones,last_t1,last_t2,last_t3,last_read_on\n")
        for i in range(count):
            out.write(f"{first_account + i},{60_000_000 + i},1,6,,1000,,,2026-01-01\n")
    return path


class Serve:
    """One `sms-gateway serve` process, its output in a log file."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Serve:
        handle = self.log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sms_gateway", "serve", "--config", str(self.config)],
            cwd=ROOT,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        handle.close()
        return self

    def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            return self.process.wait(60)
        return self.process.returncode

    def ensure_dead(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


async def cli(config: Path, *args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sms_gateway", *args, "--config", str(config),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    _out, err = await process.communicate()
    assert 0 == process.returncode, err.decode()
