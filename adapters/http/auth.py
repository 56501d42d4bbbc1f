"""Ops access: the `[ops] token` as a bearer token, or a session cookie from the login form.

The cookie never holds the token: it holds an expiry and an HMAC of it keyed by the
token, so changing the token ends every session and a stolen cookie expires. Tokens
and MACs are compared in constant time; neither is ever logged.

The cookie is HttpOnly and SameSite=Strict, and Secure when the request came over
https (directly or via a proxy setting X-Forwarded-Proto: https). On plain
http://localhost it is sent without Secure, because browsers drop Secure cookies set
over http; use plain http only on the loopback interface or behind a TLS proxy.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

from aiohttp import web

SESSION_COOKIE = "ops_session"
SESSION_TTL_S = 12 * 3600


class OpsAuth:
    def __init__(self, token: str, clock: Callable[[], float] = time.time) -> None:
        self._token = token.encode("utf-8")
        self._clock = clock

    @property
    def configured(self) -> bool:
        return bool(self._token)

    def token_matches(self, candidate: str) -> bool:
        if not self._token:
            # An empty token must not let an empty password in.
            return False
        return hmac.compare_digest(candidate.encode("utf-8"), self._token)

    def _mac(self, expires: int) -> str:
        return hmac.new(self._token, f"ops-session:{expires}".encode(), hashlib.sha256).hexdigest()

    def new_session(self) -> str:
        expires = int(self._clock()) + SESSION_TTL_S
        return f"{expires}.{self._mac(expires)}"

    def session_valid(self, value: str) -> bool:
        if not self._token:
            return False
        expires_text, _, mac = value.partition(".")
        if not expires_text.isdigit() or len(expires_text) > 12:
            return False
        expires = int(expires_text)
        if expires < self._clock():
            return False
        return hmac.compare_digest(mac.encode("ascii", "replace"), self._mac(expires).encode())

    def authenticated(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer" and self.token_matches(credentials.strip()):
            return True
        cookie = request.cookies.get(SESSION_COOKIE)
        return cookie is not None and self.session_valid(cookie)

    def set_session_cookie(self, request: web.Request, response: web.StreamResponse) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            self.new_session(),
            max_age=SESSION_TTL_S,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=is_https(request),
        )

    @staticmethod
    def clear_session_cookie(response: web.StreamResponse) -> None:
        response.del_cookie(SESSION_COOKIE, path="/")


def is_https(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"
