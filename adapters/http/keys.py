"""Typed keys of the aiohttp application's state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from adapters.http.auth import OpsAuth
from sms_gateway.bootstrap import Gateway

GATEWAY_KEY = web.AppKey("gateway", Gateway)
LINK_STATE_KEY: web.AppKey[Callable[[], str]] = web.AppKey("link_state")
# Each SMPP link's state (SmppAdapter.links_status), for /health and the dashboard.
LINKS_KEY: web.AppKey[Callable[[], list[dict[str, Any]]]] = web.AppKey("links")
AUTH_KEY = web.AppKey("ops_auth", OpsAuth)
