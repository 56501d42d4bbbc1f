"""The `sms-gateway` command line, run as a real process on a temporary SQLite database.

Its messages follow `[gateway] locale`: the tests that check them run in Russian (the
default: their config leaves the key out) and in English."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
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


def write_config(tmp_path: Path, locale: str = "ru", rules: str = "") -> Path:
    """A config on tmp_path/gw.db; Russian without a locale key, as shipped by default."""
    path = tmp_path / "gateway.toml"
    path.write_text(
        f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path}/gw.db"\n'
        f'[http]\nport = {_free_port()}\n[gateway]\nlog_format = "json"\n'
        + ("" if locale == "ru" else f'locale = "{locale}"\n')
        # The real clock runs here: a window covering the whole month keeps the
        # period predictable on any day.
        + f"[rules]\nwindow_start_day = 1\nwindow_end_day = 31\n{rules}",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path)


LOCALES = ["ru", "en"]
# What the CLI says, per locale, in the tests below.
SAYS = {
    "ru": {
        "created": "база данных создана: схема в версии {head}",
        "already": "база данных уже в версии {head}",
        "read": "прочитано строк: 8 за ",
        "counts": [
            "лицевые счета: создано 7, обновлено (открыты снова) 0, без изменений 0, закрыто 0",
            "счётчики:      создано 8, обновлено 0, без изменений 0, закрыто 0",
            "телефоны:      добавлено 4, без изменений 0",
        ],
        "accepted": "Приняты показания ЛС 1234567833: Т1 5450 (+50), Т2 2130 (+30).",
        "exported": "выгружено показаний: 1, в файл {path}",
        "rejected": [
            "файл отклонён, ничего не импортировано:",
            "строка 3: zones должно быть целым числом, а не «one»",
            "строка 4: account «12» не подходит под [gateway] account_pattern; phones: «12» — "
            "не номер телефона; last_t2 задан, а у счётчика zones = 1",
            "строка 5: счётчик 00112233 лицевого счёта 1234567833 уже есть в строке 2",
        ],
        "bad_period": "--period: нужен месяц в виде ГГГГ-ММ, а не «2026-13»",
        "bad_phone": "--from: «12» — не номер телефона",
        "rate_limited": "Слишком много сообщений. Следующие примем через час.",
        "no_reply": "(без ответа)",
        "behind": "схема базы данных: её нет, а программе нужна версия {head}: "
        "выполните `sms-gateway db upgrade`",
        "prune_refused": [
            "--prune отклонён, ничего не импортировано:",
            "файл закрыл бы 6 из 8 открытых счётчиков (75 %) и лицевых счетов: 5, больше "
            "предела 10 % ([billing] prune_max_share). Файл обрезан или неполный? Если это "
            "полный список расчётного центра, повторите с --prune-max-share 0.75 (по HTTP: "
            "prune_max_share=0.75)",
        ],
        "pruned": "счётчики:      создано 0, обновлено 0, без изменений 2, закрыто 6",
        "alone": "--prune-max-share действует только вместе с --prune",
    },
    "en": {
        "created": "database upgraded from empty to {head}",
        "already": "database already at {head}",
        "read": "imported 8 rows in ",
        "counts": [
            "accounts: 7 created, 0 updated (reopened), 0 unchanged, 0 closed",
            "meters:   8 created, 0 updated, 0 unchanged, 0 closed",
            "phones:   4 added, 0 unchanged",
        ],
        "accepted": "Reading accepted, account 1234567833: T1 5450 (+50), T2 2130 (+30).",
        "exported": "exported 1 readings to {path}",
        "rejected": [
            "file rejected, nothing imported:",
            "line 3: zones must be a whole number, got 'one'",
            "line 4: account '12' does not match [gateway] account_pattern; phone '12' is "
            "not a phone number; last_t2 given for a 1-zone meter",
            "line 5: meter 00112233 of account 1234567833 already on line 2",
        ],
        "bad_period": "--period: expected a month as YYYY-MM, got '2026-13'",
        "bad_phone": "--from: '12' is not a phone number",
        "rate_limited": "Too many messages. Please try again in an hour.",
        "no_reply": "(no reply)",
        "behind": "database schema is at nothing, the code needs {head}: "
        "run `sms-gateway db upgrade`",
        "prune_refused": [
            "prune refused, nothing imported:",
            "the file would close 6 of 8 open meters (75 %) and 5 accounts, more than the "
            "limit of 10 % ([billing] prune_max_share). A truncated or partial file? If it is "
            "billing's full list, run again with --prune-max-share 0.75 (over HTTP: "
            "prune_max_share=0.75)",
        ],
        "pruned": "meters:   0 created, 0 updated, 2 unchanged, 6 closed",
        "alone": "--prune-max-share goes with --prune",
    },
}


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize("locale", LOCALES)
def test_import_send_export(locale: str, tmp_path: Path):
    """The whole ops loop, each step's message in the locale: migrate (and again),
    import accounts, text a reading, export it."""
    says = SAYS[locale]
    config = write_config(tmp_path, locale)
    head = head_revision("sqlite://")
    upgraded = run("db", "upgrade", "--config", str(config))
    assert 0 == upgraded.returncode, upgraded.stderr
    assert says["created"].format(head=head) == upgraded.stdout.strip()
    again = run("db", "upgrade", "--config", str(config))
    assert says["already"].format(head=head) == again.stdout.strip()

    # The demo accounts `make run` loads, and the text the README (and issue 2) sends.
    imported = run("accounts", "import", "--config", str(config), "config/demo_accounts.csv")
    assert 0 == imported.returncode, imported.stderr
    lines = imported.stdout.strip().splitlines()
    assert lines[0].startswith(says["read"]), lines
    assert says["counts"] == lines[1:]

    sent = run(
        "send", "--config", str(config), "--from", "8 916 123-45-67", "1234567833 Т1 5450 Т2 2130"
    )
    assert 0 == sent.returncode, sent.stderr
    assert says["accepted"] == sent.stdout.strip()

    period = datetime.now(ZoneInfo("Europe/Moscow")).strftime("%Y-%m")
    out = tmp_path / "export.csv"
    exported = run(
        "readings", "export", "--config", str(config), "--period", period, "-o", str(out)
    )
    assert 0 == exported.returncode, exported.stderr
    assert says["exported"].format(path=out) == exported.stdout.strip()
    # The CSV is the same in every locale.
    lines = out.read_text(encoding="utf-8").splitlines()
    assert "account,meter_serial,period,t1,t2,t3,status,submitted_at,channel" == lines[0]
    assert 2 == len(lines)
    assert lines[1].startswith(f"1234567833,00112233,{period},5450,2130,,accepted,")
    assert lines[1].endswith(",cli")

    bad_period = run("readings", "export", "--config", str(config), "--period", "2026-13")
    assert (2, says["bad_period"]) == (bad_period.returncode, bad_period.stderr.strip())


@pytest.mark.parametrize("locale", LOCALES)
def test_bad_csv_exits_non_zero_with_line_numbers(locale: str, tmp_path: Path):
    """Every bad line of the file with its number and every problem of it, in the
    locale; nothing imported."""
    config = write_config(tmp_path, locale)
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "account,meter_serial,zones,digits,phones,last_t1,last_t2,last_t3,last_read_on\n"
        "1234567833,00112233,1,5,,,,,\n"
        "1234567833,2,one,5,,,,,\n"
        "12,3,1,5,12,100,200,,2026-10-01\n"
        "1234567833,00112233,2,5,,,,,\n",
        encoding="utf-8",
    )
    result = run("accounts", "import", "--config", str(config), str(bad))
    assert (1, "") == (result.returncode, result.stdout)
    assert SAYS[locale]["rejected"] == result.stderr.strip().splitlines()
    assert 0 == _open_meters(tmp_path / "gw.db")


def _open_meters(database: Path) -> int:
    with sqlite3.connect(database) as conn:
        return int(
            conn.execute("SELECT count(*) FROM meters WHERE closed_at IS NULL").fetchone()[0]
        )


@pytest.mark.parametrize("locale", LOCALES)
def test_a_prune_of_a_truncated_file_is_refused_until_forced(locale: str, tmp_path: Path):
    """`accounts import --prune` with two of the eight demo meters: exit 1 saying how
    many it would close and how to override, the database unchanged; with
    --prune-max-share as suggested it closes them."""
    config = write_config(tmp_path, locale)
    assert (
        0
        == run("accounts", "import", "--config", str(config), "config/demo_accounts.csv").returncode
    )
    partial = tmp_path / "partial.csv"
    partial.write_text(
        "".join(
            Path(ROOT / "config/demo_accounts.csv").read_text(encoding="utf-8").splitlines(True)[:3]
        ),
        encoding="utf-8",
    )
    refused = run("accounts", "import", "--prune", "--config", str(config), str(partial))
    assert (1, "") == (refused.returncode, refused.stdout)
    assert SAYS[locale]["prune_refused"] == refused.stderr.strip().splitlines()
    assert 8 == _open_meters(tmp_path / "gw.db")

    alone = run(
        "accounts", "import", "--prune-max-share", "0.75", "--config", str(config), str(partial)
    )
    assert (2, SAYS[locale]["alone"]) == (alone.returncode, alone.stderr.strip())
    forced = run(
        "accounts", "import", "--prune", "--prune-max-share", "0.75",
        "--config", str(config), str(partial),
    )  # fmt: skip
    assert 0 == forced.returncode, forced.stderr
    assert SAYS[locale]["pruned"] == forced.stdout.strip().splitlines()[2]
    assert 2 == _open_meters(tmp_path / "gw.db")


@pytest.mark.parametrize("locale", LOCALES)
def test_send_and_schema_messages_follow_the_locale(locale: str, tmp_path: Path):
    """`send`: a bad --from, then (one SMS an hour) the rate-limit reply and the
    silence after it; on a database that was never migrated, with migrating off,
    what to run."""
    says = SAYS[locale]
    config = write_config(tmp_path, locale, rules="rate_limit_per_phone_per_hour = 1\n")
    behind = run("send", "--config", str(config), "--from", "+79161234567", "ИНФО",
                 env={"SMS_GATEWAY__DATABASE__UPGRADE_ON_START": "false"})  # fmt: skip
    assert (1, says["behind"].format(head=head_revision("sqlite://"))) == (
        behind.returncode,
        behind.stderr.strip(),
    )
    bad_phone = run("send", "--config", str(config), "--from", "12", "1234567833 1234")
    assert (2, says["bad_phone"]) == (bad_phone.returncode, bad_phone.stderr.strip())
    replies = [
        run("send", "--config", str(config), "--from", "+79161234567", "1234567833 1234").stdout
        for _ in range(3)
    ]
    assert [says["rate_limited"], says["no_reply"]] == [reply.strip() for reply in replies[1:]]


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
