"""Conversations through the real composition root, on SQLite and PostgreSQL.

Each script is what a subscriber's phone shows; `tests/conversation.py` reads it.
Test accounts (tests/fixtures/accounts.csv): 1234567833 one zone, last 1184;
5550001112 two zones, last 5400/2100; 7770003334 three zones, last 850/610/1500;
4440005556 two meters (...5678 one zone, ...9999 two zones); all read 2026-10-20
or near it. The clock starts at 2026-11-18 09:00 UTC, inside the reading window.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from adapters.db.schema import messages, readings
from sms_gateway.domain.segments import segment_count
from tests.conversation import run_script


@pytest.fixture
async def gateway(db_url, settings_for, gateway_factory):
    return await gateway_factory(settings_for(db_url))


async def test_readings_in_every_accepted_shape(gateway, clock):
    """Positional, labelled, glued labels, keywords and separators all book the same way."""
    await run_script(
        gateway,
        clock,
        """
        79161234567 > 1234567833 1234
        < Приняты показания ЛС 1234567833: Т1 1234 (+50).
        79167654321 > ЛС 5550001112 Т1 5450 Т2 2130
        < Приняты показания ЛС 5550001112: Т1 5450 (+50), Т2 2130 (+30).
        79001112233 > 7770003334 900 640 1550
        < Приняты показания ЛС 7770003334: Т1 900(+50) Т2 640(+30) Т3 1550(+50)
        79001112233 > 121000000000*0563
        < Приняты показания ЛС 121000000000: Т1 563 (+63).
        79001112233 > ACC123 45678
        < Приняты показания ЛС ACC123: Т1 45678 (+678).
        """,
    )


async def test_a_date_in_the_text_is_not_a_reading(gateway, clock):
    """A two-zone account with a date after its readings books the two readings."""
    await run_script(
        gateway,
        clock,
        """
        79167654321 > 5550001112 5450 2130 на 18.11.2026
        < Приняты показания ЛС 5550001112: Т1 5450 (+50), Т2 2130 (+30).
        79161234567 > 1234567833 1234 18 ноября
        < Приняты показания ЛС 1234567833: Т1 1234 (+50).
        """,
    )


async def test_the_senders_own_phone_number_in_the_text_is_skipped(gateway, clock):
    """Subscribers add their own number in any spelling, before or after the rest."""
    await run_script(
        gateway,
        clock,
        """
        79161234567 > 89161234567 1234567833 1234
        < Приняты показания ЛС 1234567833: Т1 1234 (+50).
        79167654321 > 5550001112 5450 2130 +79167654321
        < Приняты показания ЛС 5550001112: Т1 5450 (+50), Т2 2130 (+30).
        79167654321 > 9167654321 Т1 5450 Т2 2130
        < Эти показания ЛС 5550001112 уже приняты: Т1 5450, Т2 2130.
        """,
    )


async def test_another_phone_number_in_the_text_is_not_skipped_as_the_senders(gateway, clock):
    """Someone else's number is not dropped as the sender's own: alone with the
    account, it is read as the reading (and refused as too long)."""
    await run_script(
        gateway,
        clock,
        """
        79161234567 > 1234567833 89160000000
        < Показание 89160000000 длиннее 5 цифр счётчика. Отправьте целые кВт·ч, без красных цифр: 1234567833 ...
        """,
    )


async def test_a_number_too_long_for_the_meter_is_left_out_when_the_rest_fits(gateway, clock):
    """An account-like number that cannot be a reading (longer than the register) is
    left out when the remaining numbers fit the meter; alone, it is still an error."""
    await run_script(
        gateway,
        clock,
        """
        79001112233 > 8888888888 5550001112 5450 2130
        < Приняты показания ЛС 5550001112: Т1 5450 (+50), Т2 2130 (+30).
        79001112233 > 1234567833 1234567890
        < Показание 1234567890 длиннее 5 цифр счётчика. Отправьте целые кВт·ч, без красных цифр: 1234567833 ...
        """,
    )


async def test_registered_phone_may_omit_the_account(gateway, clock):
    """Д5450 Н2130 from the phone listed for a two-zone account books that account."""
    await run_script(
        gateway,
        clock,
        """
        79167654321 > Д5450 Н2130
        < Приняты показания ЛС 5550001112: Т1 5450 (+50), Т2 2130 (+30).
        79001112233 > Д5450 Н2130
        < Укажите номер ЛС из квитанции и показания, например: 1234567833 5450
        """,
    )


async def test_duplicate_then_correction(gateway, clock):
    """The same reading again changes nothing; a different one replaces it."""
    await run_script(
        gateway,
        clock,
        """
        79161234567 > 1234567833 1234
        < Приняты показания ЛС 1234567833: Т1 1234 (+50).
        79161234567 > 1234567833 1234
        < Эти показания ЛС 1234567833 уже приняты: Т1 1234.
        79161234567 > 1234567833 1240
        < Исправлены показания ЛС 1234567833: Т1 1240 (+56).
        """,
    )
    async with gateway.store.reader() as tx:
        rows = (await tx.conn.execute(select(readings.c.period, readings.c.t1))).all()
    assert [tuple(r) for r in rows] == [("2026-11", 1240)]


async def test_errors_tell_what_to_send(gateway, clock):
    """Each error outcome names the fix, shaped for the account's meter."""
    await run_script(
        gateway,
        clock,
        """
        79001112233 > 7770003334 900 640
        < Счётчик ЛС 7770003334 трёхтарифный, нужно три показания. Отправьте: 7770003334 Т1 ... Т2 ... Т3 ...
        79001112233 > 9999999999 900
        < ЛС 9999999999 не найден. Проверьте номер по квитанции и отправьте, например: 1234567833 5450
        79001112233 > 121000000000 56300
        < Показание 56300 длиннее 4 цифр счётчика. Отправьте целые кВт·ч, без красных цифр: 121000000000 ...
        79001112233 > 1234567833 1000
        < 1000 меньше прошлого показания 1184 (на 20.10.2026 по данным расчётного центра). Проверьте и отправьте снова: 1234567833 ...
        79001112233 > 12З4
        < В числе «12З4» есть буква. Отправьте ЛС и показания: 1234567833 5450. Справка: ПОМОЩЬ
        79001112233 > 5550001112
        < Не нашли показаний. Отправьте ЛС и показания: 5550001112 Т1 ... Т2 ... Справка: ПОМОЩЬ
        """,
    )


async def test_several_meters_on_one_account(gateway, clock):
    """The meter is named by ПУ and its last digits, or by serial after the account."""
    await run_script(
        gateway,
        clock,
        """
        79031112233 > 4440005556 3100
        < У ЛС 4440005556 несколько счётчиков (5678, 9999). Укажите 4 последние цифры номера: 4440005556 ПУ 5678 ...
        79031112233 > 4440005556 ПУ 5678 3100
        < Приняты показания ЛС 4440005556: Т1 3100 (+100).
        79031112233 > 4440005556 #44009999 7100 3100
        < Приняты показания ЛС 4440005556: Т1 7100 (+100), Т2 3100 (+100).
        79031112233 > 4440005556 ПУ 1111 3100
        < Счётчик 1111 не найден у ЛС 4440005556 (5678, 9999). Отправьте: 4440005556 ПУ 5678 ...
        """,
    )


async def test_several_accounts_are_reported_in_one_sms_or_one_per_account(gateway, clock):
    """Each part of an SMS for several accounts is decided on its own; the report is one
    SMS of at most two segments, or, when even its shortest form is longer, one SMS
    per account. A part about a second meter of the same account names its meter."""
    replies = await run_script(
        gateway,
        clock,
        """
        79031112233 > 4440005556 ПУ 5678 3100 ПУ 9999 7100 3100
        < Приняты показания ЛС 4440005556 ПУ 5678: Т1 3100 (+100). Приняты показания ЛС 4440005556 ПУ 9999: Т1 7100 (+100), Т2 3100 (+100).
        79001112233 > 1234567833 1234\\n9999999999 1000
        < Приняты показания ЛС 1234567833: Т1 1234 (+50). ЛС 9999999999 не найден, проверьте номер по квитанции.
        79001112233 > 1234567833 1000 5550001112 5000 2000 7770003334 800 600 1400
        < ЛС 1234567833: 1000 меньше прошлого 1184 (расчётный центр, 20.10.2026). Отправьте: 1234567833 ...
        < ЛС 5550001112: Т1 5000 меньше прошлого 5400 (расчётный центр, 20.10.2026). Отправьте: 5550001112 Т1 ... Т2 ...
        < ЛС 7770003334: Т1 800 меньше прошлого 850 (расчётный центр, 20.10.2026). Отправьте: 7770003334 Т1 ... Т2 ... Т3 ...
        """,
    )
    last = replies[-1]
    assert last.outbound_id is not None and len(last.further) == 2
    async with gateway.store.reader() as tx:
        rows = (
            await tx.conn.execute(
                select(messages.c.id, messages.c.reply_index, messages.c.text)
                .where(messages.c.reply_to == last.inbound_id)
                .order_by(messages.c.reply_index)
            )
        ).all()
    assert [(r.id, r.reply_index, r.text) for r in rows] == [
        (last.outbound_id, 0, last.text),
        *((outbound_id, index, text) for index, (text, outbound_id) in enumerate(last.further, 1)),
    ]
    assert all(segment_count(r.text) <= 2 for r in rows)


async def test_meter_numbers_are_shown_only_to_linked_phones(gateway, clock):
    """A stranger's error replies never reveal meter serials (REG asks for them), and
    REG with wrong digits says how to register, not how to send readings."""
    await run_script(
        gateway,
        clock,
        """
        79009998877 > 4440005556 3100
        < У ЛС 4440005556 несколько счётчиков. Укажите 4 последние цифры номера: 4440005556 ПУ ХХХХ ...
        79009998877 > 4440005556 ПУ 1111 3100
        < Счётчик 1111 не найден у ЛС 4440005556. Отправьте: 4440005556 ПУ ХХХХ ...
        79009998877 > РЕГ 4440005556 1111
        < Счётчик 1111 не найден у ЛС 4440005556. Отправьте: РЕГ 4440005556 и 4 последние цифры номера с вашего счётчика
        79009998877 > ИНФО
        < Отправьте: ИНФО <номер ЛС из квитанции>, например ИНФО 1234567833
        79009998877 > ИНФО 9999999999
        < ЛС 9999999999 не найден. Отправьте: ИНФО <номер ЛС из квитанции>, например ИНФО 1234567833
        """,
    )


async def test_unusual_consumption_is_confirmed_by_sending_again(gateway, clock):
    """A reading far above max_daily_kwh is held until the same phone sends it again."""
    await run_script(
        gateway,
        clock,
        """
        79001112233 > 1234567833 9000
        < ЛС 1234567833: расход 7816 кВт·ч за 29 дн. — необычно много. Если показания верны, отправьте это же сообщение ещё раз.
        79001112233 > 1234567833 9000
        < Подтверждены показания ЛС 1234567833: Т1 9000 (+7816).
        """,
    )
    async with gateway.store.reader() as tx:
        status = (await tx.conn.execute(select(readings.c.status))).scalar_one()
    assert status == "confirmed"


async def test_confirmation_must_come_from_the_same_phone_within_a_day(gateway, clock):
    await run_script(
        gateway,
        clock,
        """
        79001112233 > 1234567833 9000
        < ЛС 1234567833: расход 7816 кВт·ч за 29 дн. — необычно много. Если показания верны, отправьте это же сообщение ещё раз.
        79005556677 > 1234567833 9000
        < ЛС 1234567833: расход 7816 кВт·ч за 29 дн. — необычно много. Если показания верны, отправьте это же сообщение ещё раз.
        @ 2026-11-19 10:00
        79001112233 > 1234567833 9000
        < ЛС 1234567833: расход 7816 кВт·ч за 30 дн. — необычно много. Если показания верны, отправьте это же сообщение ещё раз.
        """,
    )


async def test_commands(gateway, clock):
    """HELP, LAST, REG, STOP and START, and what STOP silences."""
    await run_script(
        gateway,
        clock,
        """
        79001112233 > помощь
        < Отправьте ЛС и показания: 1234567833 5450. Два тарифа: 1234567833 Т1 5450 Т2 2130. Последние: ИНФО 1234567833. Без ответов: СТОП
        79001112233 > инфо 1234567833
        < ЛС 1234567833, последние показания по данным расчётного центра на 20.10.2026: Т1 1184.
        79001112233 > рег 7770003334 1234
        < Телефон привязан к ЛС 7770003334. Теперь можно без номера ЛС, например: Т1 5450
        79001112233 > Т1 910 Т2 650 Т3 1560
        < Приняты показания ЛС 7770003334: Т1 910(+60) Т2 650(+40) Т3 1560(+60)
        79001112233 > ИНФО
        < ЛС 7770003334, последние показания (за ноябрь 2026): Т1 910, Т2 650, Т3 1560.
        79001112233 > СТОП
        < Подтверждения отключены. Об ошибках сообщим. Включить: СТАРТ
        79001112233 > 7770003334 920 660 1570
        < (no reply)
        79001112233 > 7770003334 900
        < Счётчик ЛС 7770003334 трёхтарифный, нужно три показания. Отправьте: 7770003334 Т1 ... Т2 ... Т3 ...
        79001112233 > СТАРТ
        < Подтверждения включены. Отключить: СТОП
        79001112233 > 7770003334 930 670 1580
        < Исправлены ЛС 7770003334: Т1 930(+80) Т2 670(+60) Т3 1580(+80)
        """,
    )


async def test_after_the_window_books_next_month(gateway, clock):
    await run_script(
        gateway,
        clock,
        """
        @ 2026-11-27 09:00
        79161234567 > 1234567833 1300
        < Приняты в счёт за декабрь ЛС 1234567833: Т1 1300 (+116).
        """,
    )


async def test_outside_window_rejected_when_configured(
    db_url, settings_for, gateway_factory, clock
):
    gateway = await gateway_factory(settings_for(db_url, rules={"outside_window": "reject"}))
    await run_script(
        gateway,
        clock,
        """
        @ 2026-11-27 09:00
        79161234567 > 1234567833 1300
        < Показания принимаются с 15 по 25 число месяца. Отправьте их с 15-го: 1234567833 ...
        """,
    )


async def test_registered_phone_required(db_url, settings_for, gateway_factory, clock):
    """With require_registered_phone only listed or REG-bound phones may submit."""
    gateway = await gateway_factory(settings_for(db_url, rules={"require_registered_phone": True}))
    await run_script(
        gateway,
        clock,
        """
        79001112233 > 1234567833 1234
        < Этот телефон не привязан к ЛС 1234567833. Привяжите: РЕГ 1234567833 и 4 последние цифры номера счётчика
        79161234567 > 1234567833 1234
        < Приняты показания ЛС 1234567833: Т1 1234 (+50).
        79001112233 > РЕГ 1234567833 2233
        < Телефон привязан к ЛС 1234567833. Теперь можно без номера ЛС, например: Т1 5450
        79001112233 > 1234567833 1240
        < Исправлены показания ЛС 1234567833: Т1 1240 (+56).
        """,
    )


async def test_rate_limit_answers_once_then_stays_silent(
    db_url, settings_for, gateway_factory, clock
):
    gateway = await gateway_factory(
        settings_for(db_url, rules={"rate_limit_per_phone_per_hour": 2})
    )
    await run_script(
        gateway,
        clock,
        """
        79001112233 > помощь
        < Отправьте ЛС и показания: 1234567833 5450. Два тарифа: 1234567833 Т1 5450 Т2 2130. Последние: ИНФО 1234567833. Без ответов: СТОП
        79001112233 > 1234567833 1234
        < Приняты показания ЛС 1234567833: Т1 1234 (+50).
        79001112233 > 1234567833 1235
        < Слишком много сообщений. Следующие примем через час.
        79001112233 > 1234567833 1236
        < (no reply)
        # Opting out and back in always gets through.
        79001112233 > СТОП
        < Подтверждения отключены. Об ошибках сообщим. Включить: СТАРТ
        79001112233 > СТАРТ
        < Подтверждения включены. Отключить: СТОП
        @ 2026-11-18 10:30
        79001112233 > 1234567833 1237
        < Исправлены показания ЛС 1234567833: Т1 1237 (+53).
        """,
    )


async def test_every_message_and_reply_is_logged(gateway, clock):
    """Inbound and outbound rows with phone, outcome and the link from reply to inbound."""
    await run_script(
        gateway,
        clock,
        """
        79161234567 > 1234567833 1234
        < Приняты показания ЛС 1234567833: Т1 1234 (+50).
        """,
    )
    async with gateway.store.reader() as tx:
        rows = (
            await tx.conn.execute(
                select(
                    messages.c.id,
                    messages.c.direction,
                    messages.c.phone,
                    messages.c.outcome,
                    messages.c.account,
                    messages.c.reply_to,
                ).order_by(messages.c.id)
            )
        ).all()
    inbound, reply = rows
    assert tuple(inbound)[1:] == ("in", "+79161234567", "accepted", "1234567833", None)
    assert ("out", "+79161234567", "accepted", "1234567833", inbound.id) == tuple(reply)[1:]
