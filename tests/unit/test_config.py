"""Settings: the TOML file, environment overrides, and every problem reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from sms_gateway.config import ConfigError, load_settings, masked

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_config_loads_with_the_documented_defaults():
    settings = load_settings(ROOT / "config" / "gateway.toml", environ={})
    assert (
        settings.gateway.short_number,
        settings.gateway.locale,
        settings.gateway.timezone,
    ) == ("7377", "ru", "Europe/Moscow")
    assert settings.database.url == "sqlite+aiosqlite:///var/gateway.db"
    assert (
        settings.rules.window_start_day,
        settings.rules.window_end_day,
        settings.rules.outside_window,
        settings.rules.max_daily_kwh,
        settings.rules.require_registered_phone,
        settings.rules.rate_limit_per_phone_per_hour,
    ) == (15, 25, "next_period", 150, False, 10)


def test_environment_overrides_any_key_with_types(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text('[http]\nport = 8080\n[ops]\ntoken = ""\n', encoding="utf-8")
    settings = load_settings(
        path,
        environ={
            "SMS_GATEWAY__HTTP__PORT": "9090",
            "SMS_GATEWAY__OPS__TOKEN": "s3cret",
            "SMS_GATEWAY__RULES__REQUIRE_REGISTERED_PHONE": "true",
            "SMS_GATEWAY__SMPP__ENQUIRE_LINK_S": "2.5",
        },
    )
    assert (
        settings.http.port,
        settings.ops.token,
        settings.rules.require_registered_phone,
        settings.smpp.enquire_link_s,
    ) == (9090, "s3cret", True, 2.5)


def test_all_problems_are_reported_at_once(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(
        '[gateway]\nlocale = "de"\ntimezone = "Mars/Base"\naccount_pattern = "(("\n'
        '[rules]\nwindow_start_day = 30\noutside_window = "maybe"\nbogus = 1\n'
        "[http]\nport = 70000\n[twilio]\nenabled = true\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={"SMS_GATEWAY__NOPE": "1", "SMS_GATEWAY__HTTP__HOST": "x"})
    fields = sorted(p.split(":")[0] for p in caught.value.problems)
    assert fields == [
        "SMS_GATEWAY__NOPE",
        "[gateway] account_pattern",
        "[gateway] locale",
        "[gateway] timezone",
        "[http] port",
        "[rules] bogus",
        "[rules] outside_window",
        "[rules] window_end_day",
        "[rules] window_start_day",
        "[twilio] auth_token",
        "[twilio] public_url",
    ]


def test_type_errors_name_the_key(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text('[http]\nport = "eighty"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={"SMS_GATEWAY__RULES__MAX_DAILY_KWH": "lots"})
    assert sorted(caught.value.problems) == [
        "[http] port: expected an integer, got 'eighty'",
        "[rules] max_daily_kwh: expected an integer, got 'lots'",
    ]


def test_message_retention_is_400_days_unless_set_and_at_least_one_day(tmp_path):
    """The shipped file and the built-in default agree on 400 days; the environment
    overrides it; less than a day is reported with the other problems."""
    shipped = load_settings(ROOT / "config" / "gateway.toml", environ={})
    assert 400 == shipped.database.keep_messages_days
    path = tmp_path / "g.toml"
    path.write_text("[http]\nport = 80\n", encoding="utf-8")
    assert 400 == load_settings(path, environ={}).database.keep_messages_days
    override = {"SMS_GATEWAY__DATABASE__KEEP_MESSAGES_DAYS": "30"}
    assert 30 == load_settings(path, environ=override).database.keep_messages_days
    path.write_text("[database]\nkeep_messages_days = 0\n[http]\nport = 0\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert [
        "[database] keep_messages_days: expected at least 1 day",
        "[http] port: expected 1..65535",
    ] == sorted(caught.value.problems)


def test_missing_explicit_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path / "nope.toml", environ={})
    assert len(caught.value.problems) == 1


def test_masked_hides_secrets_and_database_password():
    settings = load_settings(
        ROOT / "config" / "gateway.toml",
        environ={
            "SMS_GATEWAY__OPS__TOKEN": "tok",
            "SMS_GATEWAY__SMPP__PASSWORD": "pw",
            "SMS_GATEWAY__DATABASE__URL": "postgresql+asyncpg://gw:hunter2@db/gw",
        },
    )
    shown = masked(settings)
    assert (
        shown["ops"]["token"],
        shown["smpp"]["password"],
        shown["twilio"]["auth_token"],
        shown["database"]["url"],
    ) == ("***", "***", "", "postgresql+asyncpg://gw:***@db/gw")
