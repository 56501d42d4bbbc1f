"""The `sms-gateway` command line, run as a real process on a temporary SQLite database."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from adapters.db.migrate import head_revision

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "sms_gateway"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(
        f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path}/gw.db"\n'
        f'[http]\nport = {_free_port()}\n[gateway]\nlog_format = "json"\n'
        # The real clock runs here: a window covering the whole month keeps the
        # period predictable on any day.
        "[rules]\nwindow_start_day = 1\nwindow_end_day = 31\n",
        encoding="utf-8",
    )
    return path


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_import_send_export(config: Path, tmp_path: Path):
    """The whole ops loop: migrate, import accounts, text a reading, export it."""
    upgraded = run("db", "upgrade", "--config", str(config))
    assert 0 == upgraded.returncode, upgraded.stderr
    assert (
        f"database upgraded from empty to {head_revision('sqlite://')}" == upgraded.stdout.strip()
    )

    # The demo accounts `make run` loads, and the text the README (and issue 2) sends.
    imported = run("accounts", "import", "--config", str(config), "config/demo_accounts.csv")
    assert 0 == imported.returncode, imported.stderr
    lines = imported.stdout.strip().splitlines()
    assert lines[0].startswith("imported 8 rows in "), lines
    assert [
        "accounts: 7 created, 0 updated (reopened), 0 unchanged, 0 closed",
        "meters:   8 created, 0 updated, 0 unchanged, 0 closed",
        "phones:   4 added, 0 unchanged",
    ] == lines[1:]

    sent = run(
        "send", "--config", str(config), "--from", "8 916 123-45-67", "1234567833 Т1 5450 Т2 2130"
    )
    assert 0 == sent.returncode, sent.stderr
    assert "Приняты показания ЛС 1234567833: Т1 5450 (+50), Т2 2130 (+30)." == sent.stdout.strip()

    period = datetime.now(ZoneInfo("Europe/Moscow")).strftime("%Y-%m")
    out = tmp_path / "export.csv"
    exported = run(
        "readings", "export", "--config", str(config), "--period", period, "-o", str(out)
    )
    assert 0 == exported.returncode, exported.stderr
    lines = out.read_text(encoding="utf-8").splitlines()
    assert "account,meter_serial,period,t1,t2,t3,status,submitted_at,channel" == lines[0]
    assert 2 == len(lines)
    assert lines[1].startswith(f"1234567833,00112233,{period},5450,2130,,accepted,")
    assert lines[1].endswith(",cli")


def test_bad_csv_exits_non_zero_with_line_numbers(config: Path, tmp_path: Path):
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "account,meter_serial,zones,digits,phones,last_t1,last_t2,last_t3,last_read_on\n"
        "1234567833,1,one,5,,,,,\n",
        encoding="utf-8",
    )
    result = run("accounts", "import", "--config", str(config), str(bad))
    assert 1 == result.returncode
    assert "line 2: zones must be a whole number, got 'one'" in result.stderr
    assert "nothing imported" in result.stderr


def test_config_check_masks_secrets(config: Path):
    result = run(
        "config", "check", "--config", str(config), env={"SMS_GATEWAY__OPS__TOKEN": "t0p-secret"}
    )
    assert 0 == result.returncode, result.stderr
    shown = json.loads(result.stdout)
    assert "***" == shown["ops"]["token"]
    assert "t0p-secret" not in result.stdout


def test_config_check_reports_every_problem(config: Path):
    result = run(
        "config",
        "check",
        "--config",
        str(config),
        env={"SMS_GATEWAY__GATEWAY__LOCALE": "fr", "SMS_GATEWAY__HTTP__PORT": "x"},
    )
    assert 2 == result.returncode
    assert "[gateway] locale" in result.stderr and "[http] port" in result.stderr


def test_config_from_environment_variable(config: Path):
    result = run("config", "check", env={"SMS_GATEWAY_CONFIG": str(config)})
    assert 0 == result.returncode, result.stderr
    assert str(config.parent) in json.loads(result.stdout)["database"]["url"]


def test_serve_answers_health_and_stops_on_sigterm(config: Path):
    """serve migrates, listens on [http] port, and exits 0 on SIGTERM."""
    port = int(config.read_text().split("port = ")[1].split()[0])
    process = subprocess.Popen(
        [*CLI, "serve", "--config", str(config)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        body = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and body is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    body = json.loads(r.read())
            except OSError:
                time.sleep(0.2)
        assert body is not None, "serve did not answer /health"
        assert ("ok", "disabled") == (body["database"], body["smpp"])
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    assert 0 == process.returncode, stderr
    # serve logs JSON lines to stdout, where container runtimes collect them.
    events = [json.loads(line)["event"] for line in stdout.splitlines() if line.startswith("{")]
    assert ["serving", "stopping", "stopped"] == [
        e for e in events if e in ("serving", "stopping", "stopped")
    ]
