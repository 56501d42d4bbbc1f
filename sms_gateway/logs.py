"""structlog set-up: JSON lines in production, a console renderer on a terminal.

`serve` logs to stdout (where container runtimes collect it); the one-shot
commands log warnings to stderr and keep stdout for their output.

Library loggers (aiohttp, sqlalchemy, smpplib) go through the same processors. smpplib
logs PDUs as hex dumps holding phone numbers and texts at DEBUG, so it is held at
INFO or above whatever the gateway's own level is.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

_QUIET_LIBRARIES = {
    "smpplib": logging.INFO,
    "aiosqlite": logging.INFO,
    "asyncio": logging.INFO,
    "alembic": logging.WARNING,
}


def configure_logging(level: str = "INFO", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Route structlog and stdlib logging to `stream` (stderr unless told otherwise).

    `serve` logs to stdout, where container runtimes collect it; the one-shot
    commands keep stdout for their output (a reply, a CSV).
    """
    stream = stream or sys.stderr
    use_console = fmt == "console" or (fmt == "auto" and stream.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=True)
        if use_console
        else structlog.processors.JSONRenderer(ensure_ascii=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if not use_console else _identity,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name, floor in _QUIET_LIBRARIES.items():
        logging.getLogger(name).setLevel(max(floor, root.level))


def _identity(_logger: Any, _name: str, event: Any) -> Any:
    return event
