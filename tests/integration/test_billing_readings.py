"""Readings from other channels: billing's latest reading (the accounts file's last_t1..3
and last_read_on) against the gateway's own bookings. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import update

from adapters.db.schema import meters
from tests.conversation import run_script


@pytest.fixture
async def gateway(db_url, settings_for, gateway_factory):
    return await gateway_factory(settings_for(db_url))


async def billing_knows(gateway, serial: str, value: int, on: date) -> None:
    """What the nightly import writes when billing has a newer reading (web cabinet,
    app, inspector) for this single-zone meter."""
    await gateway.store.run_transaction(
        lambda conn: conn.execute(
            update(meters).where(meters.c.serial == serial).values(last_t1=value, last_read_on=on)
        )
    )


async def test_a_newer_billing_reading_is_the_previous_one_and_says_so(gateway, clock):
    await run_script(
        gateway,
        clock,
        """
        @ 2026-10-22 09:00
        79161234567 > 1234567833 1200
        < Приняты показания ЛС 1234567833: Т1 1200 (+16).
        """,
    )
    await billing_knows(gateway, "00112233", 1260, date(2026, 11, 10))
    await run_script(
        gateway,
        clock,
        """
        @ 2026-11-18 09:00
        79161234567 > 1234567833 1250
        < 1250 меньше прошлого показания 1260 (на 10.11.2026 по данным расчётного центра). Проверьте и отправьте снова: 1234567833 ...
        79161234567 > 1234567833 1290
        < Приняты показания ЛС 1234567833: Т1 1290 (+30).
        79161234567 > ИНФО 1234567833
        < ЛС 1234567833, последние показания (за ноябрь 2026): Т1 1290.
        """,
    )


async def test_an_older_billing_reading_never_overrides_a_newer_booking(gateway, clock):
    await run_script(
        gateway,
        clock,
        """
        @ 2026-11-18 09:00
        79161234567 > 1234567833 1290
        < Приняты показания ЛС 1234567833: Т1 1290 (+106).
        """,
    )
    await billing_knows(gateway, "00112233", 1250, date(2026, 11, 1))
    await run_script(
        gateway,
        clock,
        """
        @ 2026-12-18 09:00
        79161234567 > 1234567833 1280
        < 1280 меньше прошлого показания 1290 (18.11.2026). Проверьте и отправьте снова: 1234567833 ...
        79161234567 > 1234567833 1400
        < Приняты показания ЛС 1234567833: Т1 1400 (+110).
        """,
    )


async def test_on_the_same_date_billing_wins(gateway, clock):
    await run_script(
        gateway,
        clock,
        """
        @ 2026-10-22 09:00
        79161234567 > 1234567833 1200
        < Приняты показания ЛС 1234567833: Т1 1200 (+16).
        """,
    )
    await billing_knows(gateway, "00112233", 1210, date(2026, 10, 22))
    await run_script(
        gateway,
        clock,
        """
        @ 2026-11-18 09:00
        79161234567 > 1234567833 1230
        < Приняты показания ЛС 1234567833: Т1 1230 (+20).
        """,
    )


async def test_info_tells_billings_newer_reading_and_where_it_comes_from(gateway, clock):
    await run_script(
        gateway,
        clock,
        """
        @ 2026-10-22 09:00
        79161234567 > 1234567833 1200
        < Приняты показания ЛС 1234567833: Т1 1200 (+16).
        """,
    )
    await billing_knows(gateway, "00112233", 1260, date(2026, 11, 10))
    await run_script(
        gateway,
        clock,
        """
        @ 2026-11-12 09:00
        79161234567 > ИНФО 1234567833
        < ЛС 1234567833, последние показания по данным расчётного центра на 10.11.2026: Т1 1260.
        """,
    )


async def test_a_correction_is_not_compared_with_its_own_booking_back_from_billing(gateway, clock):
    """The export sent billing our November booking; the nightly import brings it back
    as billing's latest (overwriting October's). A correction the next day is not
    compared with the reading it corrects: it is booked, with no consumption to show
    (October's reading is no longer known), where comparing would refuse it."""
    await run_script(
        gateway,
        clock,
        """
        @ 2026-11-18 09:00
        79161234567 > 1234567833 1290
        < Приняты показания ЛС 1234567833: Т1 1290 (+106).
        """,
    )
    await billing_knows(gateway, "00112233", 1290, date(2026, 11, 18))
    await run_script(
        gateway,
        clock,
        """
        @ 2026-11-19 09:00
        79161234567 > 1234567833 1280
        < Исправлены показания ЛС 1234567833: Т1 1280.
        """,
    )
