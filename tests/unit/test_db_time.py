"""Timestamps are stored as naive UTC, whatever zone they come in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from adapters.db.store import from_db_time, to_db_time


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 12, 4, 12, 0, 0, 123456, tzinfo=UTC),
        datetime(2026, 12, 4, 15, 0, 0, 123456, tzinfo=timezone(timedelta(hours=3))),
        datetime(2026, 12, 4, 2, 0, 0, 123456, tzinfo=timezone(timedelta(hours=-10))),
        datetime(2026, 12, 4, 12, 0, 0, 123456),  # already naive UTC
    ],
)
def test_every_zone_is_stored_as_the_same_naive_utc_moment(moment):
    stored = to_db_time(moment)
    assert stored == datetime(2026, 12, 4, 12, 0, 0, 123456)
    assert stored.tzinfo is None
    assert from_db_time(stored) == datetime(2026, 12, 4, 12, 0, 0, 123456, tzinfo=UTC)
