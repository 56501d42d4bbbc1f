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


@pytest.mark.parametrize(
    ("section", "key", "default", "override", "bad", "problem"),
    [
        ("database", "keep_messages_days", 400, 30, 0, "expected at least 1 day"),
        ("database", "commit_linger_ms", 20, 0, 5000, "expected 0..1000 ms (0: no waiting)"),
        ("billing", "prune_max_share", 0.1, 0.5, 10, "expected a share 0..1 (0.1 = 10 %)"),
    ],
)
def test_defaults_of_the_shipped_file_and_the_code_agree_and_are_checked(
    tmp_path, section, key, default, override, bad, problem
):
    """Message retention (400 days), the batches' linger (20 ms) and the prune guard's
    share (0.1): the shipped file and the built-in default agree; the environment
    overrides them; a value out of range is reported with the other problems."""
    shipped = load_settings(ROOT / "config" / "gateway.toml", environ={})
    assert default == getattr(getattr(shipped, section), key)
    path = tmp_path / "g.toml"
    path.write_text("[http]\nport = 80\n", encoding="utf-8")
    assert default == getattr(getattr(load_settings(path, environ={}), section), key)
    environ = {f"SMS_GATEWAY__{section.upper()}__{key.upper()}": str(override)}
    assert override == getattr(getattr(load_settings(path, environ=environ), section), key)
    path.write_text(f"[{section}]\n{key} = {bad}\n[http]\nport = 0\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert [
        f"[{section}] {key}: {problem}",
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


TWO_OPERATORS = """
[smpp]
enabled = true
window = 20
password = "shared"
[[smpp.links]]
name = "mts"
host = "smpp.mts.example"
system_id = "gw-mts"
tls = true
[[smpp.links]]
name = "agg_1"
group = "agg"
port = 2776
[[smpp.links]]
name = "agg_2"
group = "agg"
port = 2777
window = 5
[smpp.groups.mts]
fallback_groups = ["agg"]
"""


def test_links_inherit_the_smpp_keys_and_take_secrets_from_the_environment(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text(TWO_OPERATORS, encoding="utf-8")
    settings = load_settings(path, environ={"SMS_GATEWAY__SMPP__LINKS__MTS__PASSWORD": "m7s"})
    links = {link.name: link for link in settings.smpp.effective_links()}
    assert ["mts", "agg_1", "agg_2"] == list(links)
    mts, agg_2 = links["mts"], links["agg_2"]
    assert ("mts", "smpp.mts.example", "gw-mts", "m7s", 20, True) == (
        mts.group, mts.host, mts.system_id, mts.password, mts.window, mts.tls
    )  # fmt: skip
    assert ("agg", 2777, 5, "shared") == (agg_2.group, agg_2.port, agg_2.window, agg_2.password)
    assert ("agg",) == settings.smpp.group("mts").fallback_groups
    assert () == settings.smpp.group("agg").fallback_groups
    shown = masked(settings)["smpp"]
    assert ["***", "***", "***"] == [link["password"] for link in shown["links"]]
    assert "m7s" not in str(shown)


def test_a_plain_smpp_section_is_one_link_named_default(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text('[smpp]\nenabled = true\nhost = "10.0.0.1"\nwindow = 3\n', encoding="utf-8")
    [link] = load_settings(path, environ={}).smpp.effective_links()
    assert ("default", "default", "10.0.0.1", 3) == (link.name, link.group, link.host, link.window)


def test_every_link_problem_is_reported_at_once(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text(
        """
[smpp]
enabled = true
[[smpp.links]]
name = "mts"
bind = "both"
tls = true
tls_ca_file = "/nonexistent/ca.pem"
colour = "red"
[[smpp.links]]
name = "mts"
[[smpp.links]]
name = "Bad Name"
[smpp.groups.mts]
fallback_groups = ["nowhere"]
""",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(
            path,
            environ={
                "SMS_GATEWAY__SMPP__LINKS__MTS__WINDOW": "many",
                "SMS_GATEWAY__SMPP__LINKS__BEELINE__PASSWORD": "x",
            },
        )
    problems = caught.value.problems
    expected = [
        "[smpp.links.mts] colour: unknown key",
        "[smpp.links.mts] window: expected an integer, got 'many'",
        "[[smpp.links]] mts: two links with this name",
        "[[smpp.links]] #3 name: expected a-z, 0-9 and _",
        "SMS_GATEWAY__SMPP__LINKS__BEELINE__...: no [smpp.links] entry named 'beeline'",
        "[smpp.links.mts] bind: expected transceiver or receiver+transmitter",
        "[smpp.links.mts] tls_ca_file: no such file '/nonexistent/ca.pem'",
        "[smpp.groups.mts] fallback_groups: no link is in group 'nowhere'",
    ]
    for one in expected:
        assert any(problem.startswith(one) for problem in problems), (one, problems)
