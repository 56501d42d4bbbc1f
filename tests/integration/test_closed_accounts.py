"""An account billing has closed (an import with --prune) is answered as closed, with
where to turn, not as a mistyped number; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from adapters.db.bulk import import_accounts
from adapters.db.schema import messages
from sms_gateway.domain.model import InboundSms, Outcome
from sms_gateway.domain.parsed import Command
from sms_gateway.domain.replies import ReplyContext, compose_replies, compose_reply
from sms_gateway.domain.segments import segment_count

HEADER = "account,meter_serial,zones,digits,phones,last_t1,last_t2,last_t3,last_read_on\n"
NOW = datetime(2026, 11, 18, 9, 0, tzinfo=UTC)
PATTERN = r"\d{10,12}|[A-Z]{2,4}\d{3,10}"
CLOSED = "8000000007"
CLOSED_PHONE = "+79260000007"
CONTACT = "8 800 100-20-30"


def _file(count: int, leave_out: str | None = None) -> str:
    lines = [
        f"{8_000_000_000 + i},{50_000_000 + i},1,6,+7926{i:07d},1000,,,2026-10-20\n"
        for i in range(count)
    ]
    return HEADER + "".join(line for line in lines if not line.startswith(leave_out or "-"))


@pytest.fixture
async def pruned(db_url, settings_for, gateway_factory, tmp_path):
    """30 accounts, then a full file without CLOSED, imported with --prune."""
    settings = settings_for(db_url, gateway={"contact": CONTACT})
    gateway = await gateway_factory(settings, demo=False)
    path = tmp_path / "billing.csv"
    path.write_text(_file(30), encoding="utf-8")
    await import_accounts(gateway.store, path, PATTERN, NOW)
    path.write_text(_file(30, leave_out=CLOSED), encoding="utf-8")
    counts = await import_accounts(gateway.store, path, PATTERN, NOW, prune=True)
    assert (1, 1) == (counts.accounts_closed, counts.meters_closed)
    return gateway


async def _send(gateway, text: str, phone: str = "+79990000001"):
    return await gateway.pipeline.handle(
        InboundSms("cli", phone, "7377", text, NOW, dedupe_key=f"{phone}:{text}")
    )


async def test_a_closed_account_named_in_the_sms_is_answered_as_closed(pruned):
    reply = await _send(pruned, f"{CLOSED} 1100")
    assert "unknown_account" == str(reply.outcome)
    assert f"ЛС {CLOSED} закрыт" in reply.text
    assert CONTACT in reply.text
    assert "не найден" not in reply.text
    # A mistyped number is still "not found": closed is said only of what billing listed.
    typo = await _send(pruned, "8000000099 1100")
    assert "unknown_account" == str(typo.outcome)
    assert "ЛС 8000000099 не найден" in typo.text
    assert "закрыт" not in typo.text


async def test_the_phone_of_a_closed_account_is_told_without_naming_it(pruned):
    """The phone was linked to the closed account only: a reading without the account
    number, and LAST, say which account is closed."""
    reading = await _send(pruned, "1100", phone=CLOSED_PHONE)
    assert "unknown_account" == str(reading.outcome)
    assert f"ЛС {CLOSED} закрыт" in reading.text
    last = await _send(pruned, "ИНФО", phone=CLOSED_PHONE)
    assert f"ЛС {CLOSED} закрыт" in last.text
    # Another phone without an account number is asked for it, as before.
    stranger = await _send(pruned, "1100", phone="+79990000002")
    assert "Укажите номер ЛС" in stranger.text


async def test_the_closed_accounts_messages_stay_in_its_history(pruned):
    reply = await _send(pruned, f"{CLOSED} 1100")
    async with pruned.store.reader() as tx:
        row = (
            await tx.conn.execute(
                select(messages.c.account, messages.c.outcome).where(
                    messages.c.id == reply.inbound_id
                )
            )
        ).one()
    assert (CLOSED, "unknown_account") == (row.account, row.outcome)


@pytest.mark.parametrize("locale", ["ru", "en"])
@pytest.mark.parametrize("contact", ["", CONTACT, "https://lk.energosbyt.example.ru/readings"])
@pytest.mark.parametrize("command", [None, Command.LAST])
def test_the_closed_reply_fits_two_segments_and_says_where_to_turn(locale, contact, command):
    ctx = ReplyContext(
        Outcome.UNKNOWN_ACCOUNT,
        account="121000000000",
        account_closed=True,
        contact=contact,
        command=command,
    )
    text = compose_reply(ctx, locale)
    assert segment_count(text) <= 2
    assert "121000000000" in text
    assert (contact or ("квитанции" if locale == "ru" else "bill")) in text
    # Beside another account's part of the same SMS: each SMS still within two.
    other = ReplyContext(Outcome.UNKNOWN_ACCOUNT, account="5550001112", command=command)
    several = compose_replies([ctx, other], locale)
    assert all(segment_count(part) <= 2 for part in several)
    assert "121000000000" in "".join(several)
