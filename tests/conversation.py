"""Conversation scripts, read like the SMS thread a subscriber sees.

@ 2026-11-18 09:00          the clock (UTC) from here on
79161234567 > 1234567833 1234
< Приняты показания ЛС 1234567833: Т1 1234 (+50).
79161234567 > СТОП
< (no reply)
"""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from typing import Any

from sms_gateway.domain.model import InboundSms, Reply
from sms_gateway.phones import normalize_phone

NO_REPLY = "(no reply)"


async def run_script(gateway: Any, clock: Any, script: str, channel: str = "cli") -> list[Reply]:
    replies: list[Reply] = []
    reply: Reply | None = None
    # The SMS the last message was answered with, not yet matched by a "<" line: one
    # line per SMS, so a message answered with several SMS has several lines.
    unseen: list[str] = []
    for number, raw in enumerate(textwrap.dedent(script).strip().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@ "):
            clock.now = datetime.strptime(line[2:].strip(), "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
        elif line.startswith("<"):
            assert reply is not None, f"script line {number}: a reply before any message"
            assert unseen, f"script line {number}: no further SMS was sent"
            expected = line[1:].strip()
            actual = unseen.pop(0)
            assert expected == actual, f"script line {number}: {reply.outcome}, sent {actual!r}"
        elif " > " in line:
            assert not unseen, f"script line {number}: SMS not in the script: {unseen}"
            phone, text = line.split(" > ", 1)
            reply = await gateway.pipeline.handle(
                InboundSms(
                    channel=channel,
                    phone=normalize_phone(phone),
                    short_number="7377",
                    text=text.replace("\\n", "\n"),
                    received_at=clock(),
                )
            )
            replies.append(reply)
            unseen = (
                [NO_REPLY]
                if reply.text is None
                else [reply.text, *(further for further, _ in reply.further)]
            )
        else:
            raise AssertionError(f"script line {number}: cannot read {line!r}")
    assert not unseen, f"SMS not in the script: {unseen}"
    return replies
