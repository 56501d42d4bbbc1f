"""structlog set-up: JSON lines in production, a console renderer on a terminal.

`serve` logs to stdout (where container runtimes collect it); the one-shot
commands log warnings to stderr and keep stdout for their output.

Library loggers (aiohttp, sqlalchemy, smpplib) go through the same processors. smpplib
logs PDUs as hex dumps holding phone numbers and texts at DEBUG, so it is held at
INFO or above whatever the gateway's own level is.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, TextIO

import orjson
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

    The gateway's own loggers are structlog's native ones: a call below the level
    costs nothing and a line is rendered straight to the stream. Going through
    stdlib logging (LogRecord, handler, formatter) cost a fifth of the SMPP
    throughput at INFO (bench/smpp.py --log-level). Libraries' stdlib loggers go
    through the same processors into the same stream.
    """
    stream = stream or sys.stderr
    use_console = fmt == "console" or (fmt == "auto" and stream.isatty())
    numeric_level = logging.getLevelName(level.upper())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=True)
        if use_console
        else structlog.processors.JSONRenderer(serializer=_orjson_text)
    )
    exceptions: Any = _identity if use_console else structlog.processors.format_exc_info
    structlog.configure(
        processors=[*shared, exceptions, renderer],
        logger_factory=_NamedLoggerFactory(stream),
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            exceptions,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric_level)
    for name, floor in _QUIET_LIBRARIES.items():
        logging.getLogger(name).setLevel(max(floor, root.level))


class _NamedLogger(structlog.WriteLogger):
    """A WriteLogger that remembers the name it was asked for (`get_logger(name)`)."""

    def __init__(self, stream: TextIO, name: str) -> None:
        super().__init__(stream)
        self.name = name


class _NamedLoggerFactory:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, *args: Any) -> _NamedLogger:
        return _NamedLogger(self.stream, str(args[0]) if args else "sms_gateway")


def _add_logger_name(logger: Any, _name: str, event: Any) -> Any:
    event.setdefault("logger", getattr(logger, "name", "sms_gateway"))
    return event


def _orjson_text(event: Any, **kwargs: Any) -> str:
    """JSON with non-ASCII text as is, by orjson: a tenth of the stdlib encoder's cost,
    which was a third of a log line's (a line per MO on the SMPP hot path)."""
    try:
        return orjson.dumps(event, default=kwargs.get("default")).decode()
    except TypeError:
        # What orjson refuses outright (integers past 64 bits): a log line never fails.
        return json.dumps(event, ensure_ascii=False, **kwargs)


def _identity(_logger: Any, _name: str, event: Any) -> Any:
    return event
