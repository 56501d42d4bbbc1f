"""Settings: one TOML file, every key overridable by `SMS_GATEWAY__SECTION__KEY`.

Read once by the entry point and passed down as frozen dataclasses. Every problem
found is collected and reported at once (ConfigError lists them all).
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from sms_gateway.errors import ConfigError

ENV_PREFIX = "SMS_GATEWAY__"
CONFIG_PATH_ENV = "SMS_GATEWAY_CONFIG"
DEFAULT_CONFIG_PATH = "config/gateway.toml"

# Keys whose values are never printed or logged.
SECRET_KEYS = frozenset({"password", "token", "auth_token", "previous_auth_token"})


@dataclass(frozen=True)
class GatewaySettings:
    short_number: str = "7377"
    locale: str = "ru"
    timezone: str = "Europe/Moscow"
    account_pattern: str = r"\d{10,12}|[A-Z]{2,4}\d{3,10}"
    # Where a subscriber turns when SMS cannot serve them (an account billing closed):
    # the retailer's phone or web address, quoted in the reply. Empty: "the phone
    # number on your bill".
    contact: str = ""
    # This instance's name in the database (its claims, its heartbeat); empty: the
    # host name and the HTTP port, which stay the same across restarts.
    instance_name: str = ""
    # An instance whose heartbeat is older than this is dead: any live instance sends
    # the replies it had claimed.
    instance_dead_after_s: float = 10.0
    log_format: str = "auto"  # auto | json | console
    log_level: str = "INFO"


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = "sqlite+aiosqlite:///var/gateway.db"
    pool_size: int = 10
    # serve applies pending migrations itself at start-up (see docs/operations.md)
    upgrade_on_start: bool = True
    # The message log (and its receipts, long-MO parts, confirmations) is pruned after
    # this many days; readings never are. 400: a year's disputes plus a margin.
    keep_messages_days: int = 400
    # At a trickle, an inbound batch waits up to this long for company before its
    # transaction (sms_gateway/batching.py): fewer commits per MO, a reply ~12 ms later.
    commit_linger_ms: int = 20


@dataclass(frozen=True)
class HttpSettings:
    host: str = "127.0.0.1"
    port: int = 8080


@dataclass(frozen=True)
class RulesSettings:
    window_start_day: int = 15
    window_end_day: int = 25
    outside_window: str = "next_period"  # next_period | reject
    max_daily_kwh: int = 150
    require_registered_phone: bool = False
    rate_limit_per_phone_per_hour: int = 10


@dataclass(frozen=True)
class OpsSettings:
    token: str = ""


@dataclass(frozen=True)
class BillingSettings:
    # `accounts import --prune` (and the HTTP import's prune) is refused, nothing
    # written, when it would close more than this share of the open meters: a
    # truncated or partial file would close almost everything. 1.0: no limit.
    prune_max_share: float = 0.1


# The keys of [smpp] that are also keys of each [[smpp.links]] table: there they are
# that link's own, here the defaults of every link.
LINK_KEYS = (
    "host",
    "port",
    "system_id",
    "password",
    "system_type",
    "bind",
    "source_addr_ton",
    "source_addr_npi",
    "enquire_link_s",
    "response_timeout_s",
    "window",
    "max_send_rate",
    "reconnect_min_s",
    "reconnect_max_s",
    "dcs0_charset",
    "mo_id_tlv",
    "tls",
    "tls_ca_file",
    "tls_cert_file",
    "tls_key_file",
    "tls_verify_hostname",
    "tls_server_name",
)
# A link or group name: it is also spelled in environment variable names.
_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


@dataclass(frozen=True)
class SmppLinkSettings:
    """One bind (or receiver + transmitter pair) to one SMSC: `[[smpp.links]]`."""

    name: str = "default"
    # Links of one group reach the same subscribers (one operator, or an aggregator's
    # binds): a reply may leave through any bound link of its MO's group.
    group: str = ""
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 2775
    system_id: str = "gateway"
    password: str = ""
    system_type: str = ""
    bind: str = "transceiver"  # transceiver | receiver+transmitter
    source_addr_ton: int = 5
    source_addr_npi: int = 0
    enquire_link_s: float = 30.0
    response_timeout_s: float = 10.0
    window: int = 10
    max_send_rate: float = 100.0
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    dcs0_charset: str = "gsm"  # gsm | latin1
    mo_id_tlv: int = 0
    # SMPP over TLS (1.2 at least): the server's certificate checked against the
    # system's CAs or tls_ca_file, its name against host (or tls_server_name).
    tls: bool = False
    tls_ca_file: str = ""
    tls_cert_file: str = ""  # a client certificate, where the operator asks for one
    tls_key_file: str = ""
    tls_verify_hostname: bool = True
    tls_server_name: str = ""


@dataclass(frozen=True)
class SmppGroupSettings:
    """`[smpp.groups.NAME]`: what a group's replies may do when it has no bound link."""

    name: str
    # Groups whose links may carry this group's replies while none of its own is bound
    # (an aggregator that also reaches this operator's subscribers). Empty: wait.
    fallback_groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class SmppSettings:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 2775
    system_id: str = "gateway"
    password: str = ""
    system_type: str = ""
    bind: str = "transceiver"  # transceiver | receiver+transmitter
    source_addr_ton: int = 5
    source_addr_npi: int = 0
    enquire_link_s: float = 30.0
    response_timeout_s: float = 10.0
    window: int = 10
    max_send_rate: float = 100.0
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    dcs0_charset: str = "gsm"  # gsm | latin1
    reassembly_timeout_s: float = 60.0
    # A reply claimed by a sender that then died (kill -9, lost host) goes back to
    # the outbox after this long; longer than any submit_sm round trip.
    claim_timeout_s: float = 120.0
    # Tag of a vendor TLV in which the SMSC sends each MO's message id (decimal, e.g.
    # 5121 for 0x1401); 0 = none. Redeliveries are then recognised by that id.
    mo_id_tlv: int = 0
    # How long after an MO whose ESME_ROK may have been lost a same-text copy from
    # that phone still counts as its redelivery (docs/operators.md).
    redelivery_window_s: float = 3600.0
    # A reply that could not leave for this long (its group had no bound link) is
    # recorded failed, with the reason: a day-old confirmation only confuses.
    reply_expiry_s: float = 86400.0
    tls: bool = False
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_verify_hostname: bool = True
    tls_server_name: str = ""
    # [[smpp.links]]; none: the keys above are the one link ("default").
    links: tuple[SmppLinkSettings, ...] = ()
    groups: tuple[SmppGroupSettings, ...] = ()

    def effective_links(self) -> tuple[SmppLinkSettings, ...]:
        """The links to bind: those configured, or the one of a plain [smpp] section."""
        if self.links:
            return self.links
        return (link_from_defaults(self, {"name": "default", "group": "default"}),)

    def group(self, name: str) -> SmppGroupSettings:
        return next((g for g in self.groups if g.name == name), SmppGroupSettings(name))


def link_from_defaults(smpp: SmppSettings, own: Mapping[str, Any]) -> SmppLinkSettings:
    """A link with the [smpp] keys as defaults and its own keys over them."""
    values = {key: getattr(smpp, key) for key in LINK_KEYS}
    values.update(own)
    if not values.get("group"):
        values["group"] = values.get("name", "default")
    return SmppLinkSettings(**values)


@dataclass(frozen=True)
class TwilioSettings:
    enabled: bool = False
    auth_token: str = ""
    # Still accepted on webhook signatures while a rotation is under way (env only).
    previous_auth_token: str = ""
    public_url: str = ""
    account_sid: str = ""
    reply_mode: str = "inline"  # inline (TwiML) | rest


@dataclass(frozen=True)
class Settings:
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    rules: RulesSettings = field(default_factory=RulesSettings)
    ops: OpsSettings = field(default_factory=OpsSettings)
    billing: BillingSettings = field(default_factory=BillingSettings)
    smpp: SmppSettings = field(default_factory=SmppSettings)
    twilio: TwilioSettings = field(default_factory=TwilioSettings)

    def replace(self, **sections: Any) -> Settings:
        """A copy with some sections' keys replaced: replace(rules={"max_daily_kwh": 10})."""
        changes = {
            name: dataclasses.replace(getattr(self, name), **values)
            for name, values in sections.items()
        }
        return dataclasses.replace(self, **changes)


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read the TOML file (if any), apply environment overrides, validate everything."""
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    raw: dict[str, Any] = {}
    if path is None:
        path = environ.get(CONFIG_PATH_ENV, DEFAULT_CONFIG_PATH)
    config_path = Path(path)
    if config_path.exists():
        try:
            raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError([f"{config_path}: {exc}"]) from exc
    elif environ.get(CONFIG_PATH_ENV) or str(path) != DEFAULT_CONFIG_PATH:
        raise ConfigError([f"config file {config_path} does not exist"])

    section_types = get_type_hints(Settings)
    for section in raw:
        if section not in section_types:
            problems.append(f"[{section}]: unknown section")

    # [[smpp.links]] and [smpp.groups.NAME] are tables of tables: read apart.
    smpp_raw = raw.get("smpp")
    links_raw: Any = smpp_raw.pop("links", []) if isinstance(smpp_raw, dict) else []
    groups_raw: Any = smpp_raw.pop("groups", {}) if isinstance(smpp_raw, dict) else {}
    nested_env: dict[tuple[str, str], dict[str, str]] = {}

    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        parts = key[len(ENV_PREFIX) :].lower().split("__")
        if len(parts) == 4 and parts[0] == "smpp" and parts[1] in ("links", "groups"):
            # SMS_GATEWAY__SMPP__LINKS__MTS__PASSWORD: the key of the link named mts.
            nested_env.setdefault((parts[1], parts[2]), {})[parts[3]] = value
            continue
        if len(parts) != 2 or parts[0] not in section_types:
            problems.append(f"{key}: not of the form {ENV_PREFIX}SECTION__KEY")
            continue
        raw.setdefault(parts[0], {})[parts[1]] = value

    sections: dict[str, Any] = {}
    for section_name, section_type in section_types.items():
        values = raw.get(section_name, {})
        if not isinstance(values, dict):
            problems.append(f"[{section_name}] must be a table")
            values = {}
        sections[section_name] = _build_section(section_name, section_type, values, problems)
    smpp = sections["smpp"]
    sections["smpp"] = dataclasses.replace(
        smpp,
        links=_build_links(links_raw, nested_env, smpp, problems),
        groups=_build_groups(groups_raw, nested_env, problems),
    )
    for kind, name in sorted(nested_env):
        problems.append(
            f"{ENV_PREFIX}SMPP__{kind.upper()}__{name.upper()}__...: "
            f"no [smpp.{kind}] entry named {name!r} in the config file"
        )
    # Bad keys were left at their defaults above, so the rest can still be checked
    # and every problem reported in one go.
    settings = Settings(**sections)
    problems.extend(validate(settings))
    if problems:
        raise ConfigError(problems)
    return settings


def _build_section(
    name: str, section_type: type[Any], values: dict[str, Any], problems: list[str]
) -> Any:
    hints = get_type_hints(section_type)
    known = {f.name for f in fields(section_type)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            problems.append(f"[{name}] {key}: unknown key")
            continue
        try:
            kwargs[key] = _coerce(value, hints[key])
        except ValueError as exc:
            problems.append(f"[{name}] {key}: {exc}")
    return section_type(**kwargs)


def _build_links(
    raw: Any, env: dict[tuple[str, str], dict[str, str]], smpp: SmppSettings, problems: list[str]
) -> tuple[SmppLinkSettings, ...]:
    """[[smpp.links]], each over the [smpp] defaults; the environment's keys win, and
    `env` keeps only what named no link."""
    if not isinstance(raw, list) or not all(isinstance(one, dict) for one in raw):
        problems.append("[[smpp.links]] must be an array of tables")
        return ()
    hints = get_type_hints(SmppLinkSettings)
    known = {f.name for f in fields(SmppLinkSettings)}
    links: list[SmppLinkSettings] = []
    seen: set[str] = set()
    for position, table in enumerate(raw, 1):
        name = table.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            problems.append(
                f"[[smpp.links]] #{position} name: expected a-z, 0-9 and _ "
                f"(up to 32, a letter first), got {name!r}"
            )
            continue
        if name in seen:
            problems.append(f"[[smpp.links]] {name}: two links with this name")
            continue
        seen.add(name)
        values = dict(table)
        values.update(env.pop(("links", name), {}))
        own: dict[str, Any] = {}
        for key, value in values.items():
            if key not in known:
                problems.append(f"[smpp.links.{name}] {key}: unknown key")
                continue
            try:
                own[key] = _coerce(value, hints[key])
            except ValueError as exc:
                problems.append(f"[smpp.links.{name}] {key}: {exc}")
        links.append(link_from_defaults(smpp, own))
    return tuple(links)


def _build_groups(
    raw: Any, env: dict[tuple[str, str], dict[str, str]], problems: list[str]
) -> tuple[SmppGroupSettings, ...]:
    if not isinstance(raw, dict) or not all(isinstance(one, dict) for one in raw.values()):
        problems.append("[smpp.groups] must be tables: [smpp.groups.NAME]")
        return ()
    groups: list[SmppGroupSettings] = []
    for name, table in raw.items():
        values = dict(table)
        values.update(env.pop(("groups", name), {}))
        fallback: tuple[str, ...] = ()
        for key, value in values.items():
            if key != "fallback_groups":
                problems.append(f"[smpp.groups.{name}] {key}: unknown key")
                continue
            try:
                fallback = _coerce(value, tuple[str, ...])
            except ValueError as exc:
                problems.append(f"[smpp.groups.{name}] {key}: {exc}")
        groups.append(SmppGroupSettings(name, fallback))
    return tuple(groups)


def _coerce(value: Any, target: Any) -> Any:
    if target == tuple[str, ...]:
        # A TOML array, or from the environment "a,b".
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ValueError(f"expected a list of names, got {value!r}")
    if target is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on"}:
            return True
        if isinstance(value, str) and value.strip().lower() in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"expected true or false, got {value!r}")
    if target is int:
        if isinstance(value, bool):
            raise ValueError(f"expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            return int(value)
        raise ValueError(f"expected an integer, got {value!r}")
    if target is float:
        if isinstance(value, bool):
            raise ValueError(f"expected a number, got {value!r}")
        if isinstance(value, int | float):
            return float(value)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected a number, got {value!r}") from None
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def validate(settings: Settings) -> list[str]:
    """Every problem with otherwise well-typed settings."""
    problems: list[str] = []
    g, r, s, t = settings.gateway, settings.rules, settings.smpp, settings.twilio
    if not re.fullmatch(r"\d{3,15}|[A-Za-z0-9]{1,11}", g.short_number):
        problems.append("[gateway] short_number: expected 3-15 digits or an 11-char alphanumeric")
    if g.locale not in ("ru", "en"):
        problems.append(f"[gateway] locale: expected ru or en, got {g.locale!r}")
    try:
        zoneinfo.ZoneInfo(g.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        problems.append(f"[gateway] timezone: unknown time zone {g.timezone!r}")
    try:
        re.compile(g.account_pattern)
    except re.error as exc:
        problems.append(f"[gateway] account_pattern: not a regular expression ({exc})")
    if g.log_format not in ("auto", "json", "console"):
        problems.append("[gateway] log_format: expected auto, json or console")
    if g.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        problems.append("[gateway] log_level: expected DEBUG, INFO, WARNING or ERROR")
    if g.instance_dead_after_s < 2:
        problems.append("[gateway] instance_dead_after_s: expected at least 2 seconds")
    if len(g.instance_name) > 128:
        problems.append("[gateway] instance_name: at most 128 characters")
    url = settings.database.url
    if not (url.startswith("sqlite+aiosqlite://") or url.startswith("postgresql+asyncpg://")):
        problems.append(
            "[database] url: expected sqlite+aiosqlite:///PATH or postgresql+asyncpg://..."
        )
    if settings.database.keep_messages_days < 1:
        problems.append("[database] keep_messages_days: expected at least 1 day")
    if not 0 <= settings.database.commit_linger_ms <= 1000:
        problems.append("[database] commit_linger_ms: expected 0..1000 ms (0: no waiting)")
    if not 0 <= settings.billing.prune_max_share <= 1:
        problems.append("[billing] prune_max_share: expected a share 0..1 (0.1 = 10 %)")
    if not 1 <= settings.http.port <= 65535:
        problems.append("[http] port: expected 1..65535")
    if not 1 <= r.window_start_day <= 28:
        problems.append("[rules] window_start_day: expected 1..28")
    if not r.window_start_day <= r.window_end_day <= 31:
        problems.append("[rules] window_end_day: expected window_start_day..31")
    if r.outside_window not in ("next_period", "reject"):
        problems.append("[rules] outside_window: expected next_period or reject")
    if r.max_daily_kwh < 1:
        problems.append("[rules] max_daily_kwh: expected a positive number")
    if r.rate_limit_per_phone_per_hour < 1:
        problems.append("[rules] rate_limit_per_phone_per_hour: expected a positive number")
    if s.enabled:
        if s.claim_timeout_s < 5:
            problems.append("[smpp] claim_timeout_s: expected at least 5 seconds")
        if s.redelivery_window_s < 0:
            problems.append("[smpp] redelivery_window_s: expected 0 or more seconds")
        if s.reply_expiry_s < 60:
            problems.append("[smpp] reply_expiry_s: expected at least 60 seconds")
        problems.extend(_link_problems(s))
    if t.enabled:
        if not t.auth_token:
            problems.append(
                "[twilio] auth_token: empty while twilio is enabled "
                "(set SMS_GATEWAY__TWILIO__AUTH_TOKEN)"
            )
        if not t.public_url:
            problems.append("[twilio] public_url: empty while twilio is enabled")
        if t.reply_mode not in ("inline", "rest"):
            problems.append("[twilio] reply_mode: expected inline or rest")
    return problems


def _link_problems(s: SmppSettings) -> list[str]:
    problems: list[str] = []
    links = s.effective_links()
    for link in links:
        where = f"[smpp.links.{link.name}]" if s.links else "[smpp]"
        if link.bind not in ("transceiver", "receiver+transmitter"):
            problems.append(f"{where} bind: expected transceiver or receiver+transmitter")
        if link.dcs0_charset not in ("gsm", "latin1"):
            problems.append(f"{where} dcs0_charset: expected gsm or latin1")
        if link.window < 1:
            problems.append(f"{where} window: expected at least 1")
        if link.max_send_rate <= 0:
            problems.append(f"{where} max_send_rate: expected a positive number")
        if not 0 < link.reconnect_min_s <= link.reconnect_max_s:
            problems.append(f"{where} reconnect_min_s/reconnect_max_s: expected 0 < min <= max")
        if link.enquire_link_s <= 0:
            problems.append(f"{where} enquire_link_s: expected a positive number")
        if not 0 <= link.mo_id_tlv <= 0xFFFF:
            problems.append(f"{where} mo_id_tlv: expected a TLV tag 0..65535 (0 = none)")
        if not _NAME.fullmatch(link.group):
            problems.append(f"{where} group: expected a-z, 0-9 and _, got {link.group!r}")
        for key in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
            path = getattr(link, key)
            if link.tls and path and not Path(path).is_file():
                problems.append(f"{where} {key}: no such file {path!r}")
        if link.tls and bool(link.tls_cert_file) != bool(link.tls_key_file):
            problems.append(f"{where} tls_cert_file/tls_key_file: set both or neither")
    if not any(link.enabled for link in links):
        problems.append("[smpp] enabled, but every link has enabled = false")
    groups = {link.group for link in links}
    for group in s.groups:
        if group.name not in groups:
            problems.append(f"[smpp.groups.{group.name}]: no link is in this group")
        for other in group.fallback_groups:
            if other not in groups:
                problems.append(
                    f"[smpp.groups.{group.name}] fallback_groups: no link is in group {other!r}"
                )
    return problems


def masked(settings: Settings) -> dict[str, dict[str, Any]]:
    """The effective settings as a dict with secrets replaced by '***' (or '' when unset)."""
    out: dict[str, dict[str, Any]] = {}
    for section in fields(settings):
        values = dataclasses.asdict(getattr(settings, section.name))
        for table in [values, *values.get("links", ())]:
            for key in table:
                if key in SECRET_KEYS:
                    table[key] = "***" if table[key] else ""
        if section.name == "database":
            values["url"] = re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", values["url"])
        out[section.name] = values
    return out
