"""The ops dashboard: one server-rendered page (aiohttp-jinja2), no JavaScript, no CDN.

    GET  /          traffic per hour (inline SVG), outcome mix, latest conversations
                    with a search by phone or account, SMPP link state
    GET  /login     the token form;  POST /login sets the session cookie
    GET  /login?token=...  the same as POST, so the one-run URL `serve` prints on
                    127.0.0.1 (see sms_gateway/runner.py) opens the dashboard in one click
    POST /logout    ends the session

Every word comes from adapters/http/texts.py in the `[gateway] locale`.

Phone numbers show only their last 4 digits unless ops ticks "show full numbers"
(`?reveal=1`, logged as an audit line).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import aiohttp_jinja2
import structlog
from aiohttp import web

from adapters.http import queries
from adapters.http.api import OUTCOMES
from adapters.http.auth import OpsAuth, client_address
from adapters.http.keys import AUTH_KEY, GATEWAY_KEY, LINK_STATE_KEY, LINKS_KEY
from adapters.http.texts import Texts, texts_for
from sms_gateway import __version__
from sms_gateway.domain.model import Outcome
from sms_gateway.errors import TemporaryFailure
from sms_gateway.phones import InvalidPhone, normalize_phone

log = structlog.get_logger("adapters.http.dashboard")

CONVERSATIONS_SHOWN = 50
HOURS_SHOWN = 24
# Each SMPP link's rate: messages per minute over the last few minutes.
RATE_MINUTES = 5
CHART_WIDTH = 720
CHART_HEIGHT = 160
_BOOKED = frozenset(str(o) for o in Outcome if o.books_reading)
_ERRORS = frozenset(str(o) for o in Outcome if o.is_error)


def mask_digits(phone: str) -> str:
    """`+79161234567` -> `+*******4567`: only the last 4 digits stay readable."""
    digits_seen = 0
    total = sum(ch.isdigit() for ch in phone)
    out = []
    for ch in phone:
        if ch.isdigit():
            digits_seen += 1
            out.append(ch if digits_seen > total - 4 else "*")
        else:
            out.append(ch)
    return "".join(out)


def outcome_kind(outcome: str | None) -> str:
    """CSS class of an outcome: booked (green), error (red), info, pending."""
    if outcome is None:
        return "pending"
    if outcome in _BOOKED:
        return "booked"
    if outcome in _ERRORS:
        return "error"
    return "info"


def link_builder(current: dict[str, str | None]) -> Callable[..., str]:
    """`link(outcome="unparsed")`: the dashboard URL with some parameters changed."""

    def link(**changes: str | None) -> str:
        merged = {**current, **changes}
        kept = {name: value for name, value in merged.items() if value}
        return "/?" + urlencode(kept) if kept else "/"

    return link


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    tooltip: str
    count: int
    x: float
    y: float
    width: float
    height: float
    show_label: bool


def hour_bars(counts: dict[datetime, int], now: datetime, zone: ZoneInfo) -> list[Bar]:
    """24 bars, oldest first, the last one the current hour; labels in local time."""
    current = now.replace(minute=0, second=0, microsecond=0)
    hours = [current - timedelta(hours=HOURS_SHOWN - 1 - i) for i in range(HOURS_SHOWN)]
    peak = max([counts.get(h, 0) for h in hours] + [1])
    slot = CHART_WIDTH / HOURS_SHOWN
    bars = []
    for i, hour in enumerate(hours):
        count = counts.get(hour, 0)
        height = (CHART_HEIGHT - 20) * count / peak
        local = hour.astimezone(zone)
        bars.append(
            Bar(
                label=local.strftime("%H:00"),
                tooltip=f"{local:%d.%m %H:00}–{(local + timedelta(hours=1)):%H:00}: {count}",
                count=count,
                x=i * slot + 2,
                y=CHART_HEIGHT - height,
                width=slot - 4,
                height=height,
                show_label=i % 3 == 0 or i == HOURS_SHOWN - 1,
            )
        )
    return bars


def search_terms(
    q: str, account_pattern: str, texts: Texts
) -> tuple[str | None, str | None, str | None]:
    """(phone, account, problem) for the search box: either may match."""
    text = q.strip()
    if not text:
        return None, None, None
    compact = re.sub(r"[\s\-]", "", text).upper()
    account = compact if re.fullmatch(account_pattern, compact) else None
    try:
        phone: str | None = normalize_phone(text)
    except InvalidPhone:
        phone = None
    if phone is None and account is None:
        return None, None, texts.not_a_phone_or_account.format(text=text)
    return phone, account, None


async def dashboard(request: web.Request) -> web.StreamResponse:
    auth = request.app[AUTH_KEY]
    if not auth.authenticated(request):
        raise web.HTTPSeeOther("/login")
    gateway = request.app[GATEWAY_KEY]
    settings = gateway.settings
    texts = texts_for(settings.gateway.locale)
    zone = ZoneInfo(settings.gateway.timezone)
    now = gateway.pipeline.clock()
    q = request.query.get("q", "")[:64]
    reveal = request.query.get("reveal") == "1"
    outcome = request.query.get("outcome") or None
    phone, account, problem = search_terms(q, settings.gateway.account_pattern, texts)
    if outcome is not None and outcome not in OUTCOMES:
        problem, outcome = texts.not_an_outcome.format(outcome=outcome[:32]), None
    if reveal:
        log.info("ops_revealed_phones", search=bool(q))
    context: dict[str, Any] = {
        "t": texts,
        "version": __version__,
        "instance": settings.gateway.instance_name,
        "link_state": request.app[LINK_STATE_KEY](),
        "links": request.app[LINKS_KEY](),
        "twilio": settings.twilio.enabled,
        "timezone": settings.gateway.timezone,
        "q": q,
        "reveal": reveal,
        "outcome": outcome,
        "link": link_builder({"q": q, "outcome": outcome, "reveal": "1" if reveal else None}),
        "problem": problem,
        "now": now.astimezone(zone),
        "mask": (lambda p: p) if reveal else mask_digits,
        "outcome_kind": outcome_kind,
        "zone": zone,
        "chart_width": CHART_WIDTH,
        "chart_height": CHART_HEIGHT,
    }
    since = now - timedelta(hours=HOURS_SHOWN)
    try:
        per_hour = await queries.inbound_per_hour(gateway.store, since)
        mix = await queries.outcome_mix(gateway.store, since)
        traffic = await queries.link_traffic(gateway.store, now - timedelta(minutes=RATE_MINUTES))
        found = (
            []
            if problem
            else await queries.conversations(
                gateway.store,
                phone=phone,
                account=account,
                outcome=outcome,
                limit=CONVERSATIONS_SHOWN,
            )
        )
        database = "ok"
    except TemporaryFailure:
        per_hour, mix, found, database = {}, {}, [], "unavailable"
        traffic = {}
    total = sum(mix.values())
    context.update(
        database=database,
        bars=hour_bars(per_hour, now, zone),
        total=total,
        booked=sum(n for o, n in mix.items() if outcome_kind(o) == "booked"),
        errors=sum(n for o, n in mix.items() if outcome_kind(o) == "error"),
        mix=sorted(
            ((o, n, 100.0 * n / total if total else 0.0) for o, n in mix.items()),
            key=lambda item: (-item[1], item[0] or ""),
        ),
        conversations=found,
        rate_minutes=RATE_MINUTES,
        link_rates={
            link["name"]: (
                traffic.get((link["name"], "in"), 0) / RATE_MINUTES,
                traffic.get((link["name"], "out"), 0) / RATE_MINUTES,
            )
            for link in context["links"]
        },
        searched=bool(q.strip()) or outcome is not None,
    )
    response = aiohttp_jinja2.render_template("dashboard.html", request, context)
    response.headers["Cache-Control"] = "no-store"
    return response


def _login_page(request: web.Request, error: str | None, status: int = 200) -> web.Response:
    auth = request.app[AUTH_KEY]
    texts = texts_for(request.app[GATEWAY_KEY].settings.gateway.locale)
    return aiohttp_jinja2.render_template(
        "login.html",
        request,
        {"t": texts, "error": error, "configured": auth.configured},
        status=status,
    )


async def _sign_in(request: web.Request, token: object) -> web.StreamResponse:
    """Let the right token in with a session cookie; count and refuse anything else."""
    auth: OpsAuth = request.app[AUTH_KEY]
    texts = texts_for(request.app[GATEWAY_KEY].settings.gateway.locale)
    address = client_address(request)
    wait_s = await auth.failed_attempts.retry_after(address)
    if wait_s is not None:
        log.warning("ops_login_throttled", retry_after_s=wait_s)
        error = texts.too_many_tries.format(minutes=math.ceil(wait_s / 60))
        response = _login_page(request, error, status=429)
        response.headers["Retry-After"] = str(wait_s)
        return response
    if isinstance(token, str) and auth.token_matches(token.strip()):
        await auth.failed_attempts.succeeded(address)
        # A redirect also takes a ?token= out of the address bar at once.
        response = web.HTTPSeeOther("/")
        auth.set_session_cookie(request, response)
        log.info("ops_login")
        raise response
    await auth.failed_attempts.failed(address)
    log.warning("ops_login_failed")
    return _login_page(request, texts.wrong_token, status=401)


async def login_form(request: web.Request) -> web.StreamResponse:
    if "token" in request.query:
        return await _sign_in(request, request.query["token"])
    if request.app[AUTH_KEY].authenticated(request):
        raise web.HTTPSeeOther("/")
    return _login_page(request, None)


async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    return await _sign_in(request, form.get("token"))


async def logout(request: web.Request) -> web.StreamResponse:
    response = web.HTTPSeeOther("/login")
    OpsAuth.clear_session_cookie(response)
    raise response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", dashboard)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
