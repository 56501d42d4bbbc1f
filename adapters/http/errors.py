"""HTTP errors as JSON: every 4xx/5xx the app answers carries `{"error": "..."}`.

Handlers raise `BadInput` (400) or `NotFound` (404) with a message for the caller;
the middleware maps them, aiohttp's own HTTP exceptions, `TemporaryFailure` (503)
and anything unexpected (500, logged with its traceback, never shown).
"""

from __future__ import annotations

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from sms_gateway.errors import TemporaryFailure

log = structlog.get_logger("adapters.http")

RETRY_AFTER_S = "5"


class BadInput(ValueError):
    """A request parameter the caller must fix."""


class NotFound(LookupError):
    """The thing asked for does not exist."""


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except BadInput as exc:
        return json_error(400, str(exc))
    except NotFound as exc:
        return json_error(404, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        headers = {name: exc.headers[name] for name in ("Allow",) if name in exc.headers}
        return json_error(exc.status, exc.reason.lower(), headers or None)
    except TemporaryFailure as exc:
        log.warning("http_temporary_failure", path=request.path, reason=str(exc))
        return json_error(503, "temporarily unavailable", {"Retry-After": RETRY_AFTER_S})
    except Exception:
        log.exception("http_unhandled_error", method=request.method, path=request.path)
        return json_error(500, "internal error")
