"""Ops access: the `[ops] token` as a bearer token, or a session cookie from the login form.

The cookie never holds the token: it holds an expiry and an HMAC of it keyed by the
token, so changing the token ends every session and a stolen cookie expires. Tokens
and MACs are compared in constant time; neither is ever logged.

The cookie is HttpOnly and SameSite=Strict, and Secure when the request came over
https (directly or via a proxy setting X-Forwarded-Proto: https). On plain
http://localhost it is sent without Secure, because browsers drop Secure cookies set
over http; use plain http only on the loopback interface or behind a TLS proxy.

Guessing is throttled: after MAX_FAILED_ATTEMPTS wrong tokens (login form or bearer)
from one client address within FAILED_ATTEMPTS_WINDOW_S, that address gets 429 with
Retry-After, right token or not, until its oldest failure is older than the window.
The failures are rows in the database (`ops_login_failures`), so the count holds across
every instance; while the database is away each instance counts in its own memory.
Behind a reverse proxy every client shares the proxy's address, so a guesser there
locks the form for everyone for at most the window: the price of not trusting a
client-supplied X-Forwarded-For.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import UTC, datetime

from aiohttp import web

from adapters.db.store import SqlStore
from adapters.http.queries import forget_login_failures, recent_login_failures, record_login_failure
from sms_gateway.errors import TemporaryFailure

SESSION_COOKIE = "ops_session"
SESSION_TTL_S = 12 * 3600
MAX_FAILED_ATTEMPTS = 5
FAILED_ATTEMPTS_WINDOW_S = 15 * 60
# Addresses remembered at once; the least recently failing are forgotten first.
MAX_TRACKED_ADDRESSES = 10_000


class _MemoryFailures:
    """Wrong tokens per client address within a sliding window, in this process."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def recent(self, address: str, now: float) -> tuple[int, float | None]:
        failures = self._failures.get(address)
        if failures is None:
            return 0, None
        horizon = now - self.window_s
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return 0, None
        return len(failures), failures[0]

    def failed(self, address: str, now: float) -> None:
        failures = self._failures.get(address)
        if failures is None:
            failures = self._failures[address] = deque(maxlen=self.limit)
            while len(self._failures) > MAX_TRACKED_ADDRESSES:
                self._failures.popitem(last=False)
        self._failures.move_to_end(address)
        failures.append(now)

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)


class FailedAttempts:
    """Wrong tokens per client address within a sliding window, in the database.

    `recent` is read once per request; a success deletes the address's rows only when
    there were any, so an ordinary authenticated request costs one indexed read.
    """

    def __init__(
        self,
        store: SqlStore | None,
        limit: int = MAX_FAILED_ATTEMPTS,
        window_s: float = FAILED_ATTEMPTS_WINDOW_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._memory = _MemoryFailures(limit, window_s)

    async def retry_after(self, address: str) -> int | None:
        """Seconds this address must wait before trying again, or None."""
        return self.wait_s(*await self.recent(address))

    def wait_s(self, count: int, oldest: float | None) -> int | None:
        """The wait that `recent`'s (count, oldest) imposes, or None."""
        if count < self.limit or oldest is None:
            return None
        return max(1, math.ceil(oldest + self.window_s - self.clock()))

    async def recent(self, address: str) -> tuple[int, float | None]:
        """(failures within the window, when the oldest of them was)."""
        now = self.clock()
        local = self._memory.recent(address, now)
        if self.store is None:
            return local
        try:
            count, oldest = await recent_login_failures(
                self.store, address, _as_time(now - self.window_s)
            )
        except TemporaryFailure:
            return local
        stored = (count, oldest.timestamp() if oldest is not None else None)
        # What this instance counted while the database was away adds to the rest.
        if local[0] == 0:
            return stored
        firsts = [t for t in (stored[1], local[1]) if t is not None]
        return stored[0] + local[0], min(firsts)

    async def failed(self, address: str) -> None:
        now = self.clock()
        if self.store is not None:
            try:
                await record_login_failure(
                    self.store, address, _as_time(now), _as_time(now - self.window_s)
                )
                return
            except TemporaryFailure:
                pass
        self._memory.failed(address, now)

    async def succeeded(self, address: str, known_failures: int = 1) -> None:
        """Forget the address's failures; `known_failures` 0 (from `recent`) skips the write."""
        self._memory.succeeded(address)
        if self.store is None or known_failures == 0:
            return
        with contextlib.suppress(TemporaryFailure):
            await forget_login_failures(self.store, address)


def _as_time(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


def bearer_token(request: web.Request) -> str | None:
    """The token of an `Authorization: Bearer ...` header, if one came."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else None


def client_address(request: web.Request) -> str:
    return request.remote or "unknown"


class OpsAuth:
    def __init__(
        self, token: str, store: SqlStore | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self._token = token.encode("utf-8")
        self._clock = clock
        self.failed_attempts = FailedAttempts(store)

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
        bearer = bearer_token(request)
        if bearer is not None and self.token_matches(bearer):
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
