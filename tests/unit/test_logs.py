"""The JSON log lines: one object per line, whatever the values are."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import date

import pytest
import structlog

from sms_gateway.logs import configure_logging


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    configure_logging("INFO", "json", out)
    yield out
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def _records(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_values_orjson_refuses_still_give_a_line(stream: io.StringIO) -> None:
    log = structlog.get_logger("sms_gateway.test")
    log.info("big", value=2**70, text="Приняты")
    log.info("odd", value=object(), day=date(2026, 11, 18))
    big, odd = _records(stream)
    assert big["value"] == 2**70 and big["text"] == "Приняты"
    assert str(odd["value"]).startswith("<object object")
    assert odd["day"] == "2026-11-18"
    # Cyrillic is written as is, not as \u escapes.
    assert "Приняты" in stream.getvalue()


def test_exceptions_and_library_lines_are_json_too(stream: io.StringIO) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        structlog.get_logger("sms_gateway.test").error("failed", exc_info=True)
    logging.getLogger("aiohttp.access").warning("GET %s", "/health")
    failed, library = _records(stream)
    assert failed["level"] == "error" and "ValueError: boom" in str(failed["exception"])
    assert library == {
        "event": "GET /health",
        "level": "warning",
        "logger": "aiohttp.access",
        "timestamp": library["timestamp"],
    }
