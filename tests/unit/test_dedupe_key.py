"""The dedupe key of a message without a transport id: unique, and ordered by time."""

from __future__ import annotations

import time

from sms_gateway.service import new_dedupe_key


def test_keys_are_unique_and_later_keys_sort_after_earlier_ones():
    keys = [new_dedupe_key() for _ in range(20_000)]
    assert len(set(keys)) == len(keys)
    assert all(len(key) == 32 and int(key, 16) >= 0 for key in keys)
    time.sleep(0.002)
    later = new_dedupe_key()
    # Side by side in the unique index (channel, dedupe_key): new rows go to its end.
    assert later > max(keys)
    assert sorted(keys[::1000]) == keys[::1000]
