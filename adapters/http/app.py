"""Building the aiohttp application around a gateway.

GET  /health                      open: database, SMPP link state, version
GET  /metrics                     open: Prometheus text from gateway.metrics.registry
/api/...                          ops JSON API (bearer token or session cookie)
GET  /, /login, POST /logout      ops dashboard
POST /twilio/sms, /twilio/status  Twilio webhooks (only with [twilio] enabled)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from adapters.http import api, dashboard
from adapters.http.auth import OpsAuth, bearer_token, client_address
from adapters.http.errors import json_error, json_errors
from adapters.http.keys import AUTH_KEY, GATEWAY_KEY, LINK_STATE_KEY, LINKS_KEY
from adapters.http.queries import inbound_queue_depth
from adapters.twilio import TwilioRestSender, TwilioSignature, TwilioWebhook
from sms_gateway import __version__
from sms_gateway.bootstrap import Gateway
from sms_gateway.errors import ConfigError, TemporaryFailure

HERE = Path(__file__).resolve().parent

__all__ = ["AUTH_KEY", "GATEWAY_KEY", "LINK_STATE_KEY", "create_app"]


async def health(request: web.Request) -> web.Response:
    """503 only when the database is away. SMPP trouble is `"status": "degraded"` with
    200: the process still serves Twilio, the API and the other links (alert on it)."""
    gateway = request.app[GATEWAY_KEY]
    database_ok = await gateway.store.ping()
    smpp = request.app[LINK_STATE_KEY]()
    if not database_ok:
        status = "unavailable"
    elif smpp in ("bound", "disabled"):
        status = "ok"  # "bound": every group has a bound link
    else:
        status = "degraded"
    body = {
        "status": status,
        "database": "ok" if database_ok else "unavailable",
        "smpp": smpp,
        "links": request.app[LINKS_KEY](),
        "instance": gateway.instance,
        "version": __version__,
    }
    return web.json_response(body, status=200 if database_ok else 503)


async def metrics(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY_KEY]
    try:
        # Depths are read at scrape time so they are right without a background loop.
        gateway.metrics.outbox_depth.set(await gateway.outbox.depth())
        gateway.metrics.inbound_queue_depth.set(await inbound_queue_depth(gateway.store))
    except TemporaryFailure:
        pass  # the last known values are still worth scraping
    response = web.Response(body=generate_latest(gateway.metrics.registry))
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


def _ops_guard(auth: OpsAuth) -> Middleware:
    @web.middleware
    async def require_ops(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/api/"):
            return await handler(request)
        address = client_address(request)
        attempts = auth.failed_attempts
        failures, oldest = await attempts.recent(address)
        wait_s = attempts.wait_s(failures, oldest)
        if wait_s is not None:
            return json_error(
                429,
                f"too many wrong ops tokens from this address; try again in {wait_s} s",
                {"Retry-After": str(wait_s)},
            )
        if not auth.authenticated(request):
            if bearer_token(request) is not None:  # a wrong one is a guess
                await attempts.failed(address)
            message = (
                "a valid ops token is required (Authorization: Bearer ...)"
                if auth.configured
                else "the ops API is off: no [ops] token is configured"
            )
            return json_error(401, message, {"WWW-Authenticate": 'Bearer realm="ops"'})
        await attempts.succeeded(address, failures)
        return await handler(request)

    return require_ops


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if response.content_type == "text/html":
        # Everything is served from here: no CDN, no inline script.
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
        )
    return response


def _twilio_webhook(gateway: Gateway, sender: TwilioRestSender | None) -> TwilioWebhook:
    twilio = gateway.settings.twilio
    problems = []
    if not twilio.auth_token:
        problems.append("[twilio] auth_token: empty while twilio is enabled")
    if not twilio.public_url:
        problems.append("[twilio] public_url: empty while twilio is enabled")
    if twilio.reply_mode == "rest" and sender is None and not twilio.account_sid:
        problems.append("[twilio] account_sid: needed with reply_mode = rest")
    if problems:
        raise ConfigError(problems)
    try:
        signature = TwilioSignature(
            twilio.auth_token, twilio.public_url, twilio.previous_auth_token
        )
    except ValueError as exc:
        raise ConfigError([f"[twilio] public_url: {exc}"]) from exc
    return TwilioWebhook(gateway, signature, sender)


def create_app(
    gateway: Gateway,
    link_state: Callable[[], str],
    *,
    links: Callable[[], list[dict[str, Any]]] = list,
    twilio_sender: TwilioRestSender | None = None,
) -> web.Application:
    """The application; raises ConfigError when Twilio is enabled without its secrets.

    `twilio_sender` replaces the REST sender built from settings (tests use one that
    talks to a local server); it is only used with `[twilio] reply_mode = "rest"`.
    """
    auth = OpsAuth(gateway.settings.ops.token, gateway.store)
    app = web.Application(middlewares=[json_errors, security_headers, _ops_guard(auth)])
    app[GATEWAY_KEY] = gateway
    app[LINK_STATE_KEY] = link_state
    app[LINKS_KEY] = links
    app[AUTH_KEY] = auth
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
    )
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_static("/static/", HERE / "static")
    api.add_routes(app)
    dashboard.add_routes(app)

    twilio = gateway.settings.twilio
    if twilio.enabled:
        rest = twilio.reply_mode == "rest"
        webhook = _twilio_webhook(gateway, twilio_sender if rest else None)
        webhook.add_routes(app)

        async def twilio_lifecycle(_app: web.Application) -> AsyncIterator[None]:
            # The REST client owns an aiohttp session, which needs the running loop.
            if rest and webhook.sender is None:
                webhook.sender = TwilioRestSender(twilio.account_sid, twilio.auth_token)
            sweep = asyncio.create_task(webhook.sweep_outbox()) if rest else None
            yield
            if sweep is not None:
                sweep.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweep
            await webhook.close()

        app.cleanup_ctx.append(twilio_lifecycle)
    return app
