"""Building the aiohttp application around a gateway."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from sms_gateway import __version__
from sms_gateway.bootstrap import Gateway

GATEWAY_KEY = web.AppKey("gateway", Gateway)
LINK_STATE_KEY = web.AppKey("link_state", Callable[[], str])


async def health(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY_KEY]
    database_ok = await gateway.store.ping()
    body = {
        "database": "ok" if database_ok else "unavailable",
        "smpp": request.app[LINK_STATE_KEY](),
        "version": __version__,
    }
    return web.json_response(body, status=200 if database_ok else 503)


def create_app(gateway: Gateway, link_state: Callable[[], str]) -> web.Application:
    app = web.Application()
    app[GATEWAY_KEY] = gateway
    app[LINK_STATE_KEY] = link_state
    app.router.add_get("/health", health)
    return app
