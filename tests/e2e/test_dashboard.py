"""The ops dashboard in a real headless Chromium, against the real app on 127.0.0.1.

An SMS arrives through the signed Twilio webhook, ops logs in with the token, sees the
conversation, searches for it by phone and takes a screenshot (kept in the test's
tmp dir); in English (`[gateway] locale = "en"`) and in Russian, the default. Debian's chromium is driven by Playwright; Playwright's own browsers are
never downloaded. Under CI=true a missing chromium fails the test instead of skipping.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import pytest
from aiohttp import web
from twilio.request_validator import RequestValidator

from adapters.http import create_app

if TYPE_CHECKING:
    from playwright.async_api import Page

CHROMIUM = Path(os.environ.get("SMS_GATEWAY_TEST_CHROMIUM", "/usr/bin/chromium"))
IN_CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
OPS_TOKEN = "ops-token-for-the-browser"
AUTH_TOKEN = "twilio-auth-token-for-the-browser"
PUBLIC_URL = "https://sms.example.ru/twilio/sms"

pytestmark = pytest.mark.browser


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install -y chromium)"
        if IN_CI:
            pytest.fail(reason + " — CI must run the browser test")
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture
async def serve_in(
    sqlite_url, settings_for, gateway_factory
) -> AsyncIterator[Callable[[str], Awaitable[str]]]:
    """serve_in(locale): the real application on 127.0.0.1 with a random port in that
    `[gateway] locale`; returns its base URL."""
    runners: list[web.AppRunner] = []

    async def serve(locale: str) -> str:
        settings = settings_for(
            sqlite_url,
            ops={"token": OPS_TOKEN},
            gateway={"locale": locale},
            twilio={"enabled": True, "auth_token": AUTH_TOKEN, "public_url": PUBLIC_URL},
        )
        gateway = await gateway_factory(settings)
        runner = web.AppRunner(create_app(gateway, link_state=lambda: "bound"), access_log=None)
        runners.append(runner)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    try:
        yield serve
    finally:
        for runner in runners:
            await runner.cleanup()


@pytest.fixture
async def served(serve_in) -> str:
    return await serve_in("en")


@contextlib.asynccontextmanager
async def browser_page(chromium: Path, profile: Path) -> AsyncIterator[Page]:
    """A page of a fresh headless Chromium profile, closed on the way out."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(chromium),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1366, "height": 768},
        )
        try:
            yield await browser.new_page()
        finally:
            await browser.close()


async def post_signed(base_url: str, path: str, public_url: str, form: dict[str, str]) -> str:
    signature = RequestValidator(AUTH_TOKEN).compute_signature(public_url, form)
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{base_url}{path}", data=form, headers={"X-Twilio-Signature": signature}
        ) as response,
    ):
        assert 200 == response.status
        return await response.text()


async def send_signed_sms(base_url: str, sid: str, sender: str, body: str) -> str:
    form = {"MessageSid": sid, "From": sender, "To": "+15005550006", "Body": body}
    return await post_signed(base_url, "/twilio/sms", PUBLIC_URL, form)


async def test_ops_logs_in_sees_the_webhook_message_and_finds_it_by_phone(
    chromium, served, tmp_path
):
    """Through a real browser: the login form lets ops in, the conversation that just
    came through the signed webhook is listed with its outcome, our reply and a masked
    phone, a search by another spelling of the phone finds it, and the SMPP state shows;
    in English, so the labels and our reply are English."""
    await send_signed_sms(served, "SMe2e0001", "79161234567", "1234567833 1250")
    twiml = await send_signed_sms(served, "SMe2e0002", "79031112233", "4440005556 3100")
    # Twilio reports the second reply delivered to the URL our TwiML gave it.
    reply_query = re.search(r"/twilio/status(\?reply=\d+)", twiml).group(1)
    await post_signed(
        served,
        "/twilio/status" + reply_query,
        "https://sms.example.ru/twilio/status" + reply_query,
        {"MessageSid": "SMout0002", "MessageStatus": "delivered"},
    )

    async with browser_page(chromium, tmp_path / "profile") as page:
        await page.goto(served + "/")
        assert served + "/login" == page.url

        await page.get_by_label("Ops token").fill(OPS_TOKEN)
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url(served + "/")

        rows = page.locator("table.conversations tbody tr")
        assert 2 == await rows.count()
        assert "bound" == await page.locator("#smpp-state").inner_text()
        assert "2" == await page.locator("#total").inner_text()
        assert "delivered" == await rows.first.locator("td.delivery").inner_text()

        await page.get_by_label("Phone or account").fill("8 (916) 123-45-67")
        await page.get_by_role("button", name="Search").click()
        await page.wait_for_url("**/?q=*")

        assert 1 == await rows.count()
        cells = [await cell.inner_text() for cell in await rows.first.locator("td").all()]
        assert [
            "+*******4567",
            "1234567833",
            "1234567833 1250",
            "accepted",
            "Reading accepted, account 1234567833: T1 1250 (+66).",
            "sent\nno receipt yet",
        ] == cells[1:]
        await page.get_by_role("link", name="Clear").click()
        await page.get_by_role("link", name="meter_required").click()
        assert 1 == await rows.count()
        assert "4440005556 3100" == await rows.first.locator("td.text").first.inner_text()
        await page.get_by_label("Phone or account").fill("8 (916) 123-45-67")
        await page.get_by_role("button", name="Search").click()
        await page.wait_for_url("**/?q=*")
        assert "No conversations match this search." == await page.locator(".empty").inner_text()

        await page.get_by_role("link", name="Clear").click()
        await page.get_by_label("Phone or account").fill("8 (916) 123-45-67")
        await page.get_by_role("button", name="Search").click()
        await page.wait_for_url("**/?q=*")
        screenshot = tmp_path / "dashboard.png"
        await page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    if keep := os.environ.get("SMS_GATEWAY_KEEP_SCREENSHOT"):
        shutil.copy(screenshot, keep)


async def test_ops_works_in_russian_by_default(chromium, serve_in, tmp_path):
    """With the default locale the login form, its error, the dashboard and its search
    speak Russian (`<html lang="ru">`), and the same flow as in English works by the
    Russian labels: a wrong token is refused, the right one opens the page, a search by
    phone finds the conversation, Clear and an empty search say so in Russian."""
    served = await serve_in("ru")
    await send_signed_sms(served, "SMru0001", "79161234567", "1234567833 1250")

    async with browser_page(chromium, tmp_path / "profile") as page:
        await page.goto(served + "/")
        assert served + "/login" == page.url
        assert "ru" == await page.locator("html").get_attribute("lang")
        await page.get_by_label("Токен доступа").fill("не тот")
        await page.get_by_role("button", name="Войти").click()
        assert "Неверный токен." == await page.get_by_role("alert").inner_text()

        await page.get_by_label("Токен доступа").fill(OPS_TOKEN)
        await page.get_by_role("button", name="Войти").click()
        await page.wait_for_url(served + "/")
        assert "Мониторинг · SMS-шлюз" == await page.title()
        cards = [
            await label.inner_text()
            for label in await page.locator(".card span:not(.figure)").all()
        ]
        assert ["Сообщения за 24 ч", "Показания приняты", "Ответы с ошибкой"] == cards[:3]
        headers = [
            await th.inner_text() for th in await page.locator("table.conversations th").all()
        ]
        assert [
            "Время",
            "Телефон",
            "Лицевой счёт",
            "Сообщение",
            "Результат",
            "Наш ответ",
            "Доставка",
        ] == headers

        await page.get_by_label("Телефон или лицевой счёт").fill("8 (916) 123-45-67")
        await page.get_by_role("button", name="Поиск").click()
        await page.wait_for_url("**/?q=*")
        rows = page.locator("table.conversations tbody tr")
        assert 1 == await rows.count()
        assert "sent\nотчёта о доставке нет" == await rows.first.locator("td.delivery").inner_text()

        await page.get_by_role("link", name="Сбросить").click()
        await page.get_by_label("Телефон или лицевой счёт").fill("8 903 000-00-00")
        await page.get_by_role("button", name="Поиск").click()
        await page.wait_for_url("**/?q=*")
        assert "По этому запросу переписок не найдено." == await page.locator(".empty").inner_text()
        await page.get_by_label("Телефон или лицевой счёт").fill("привет")
        await page.get_by_role("button", name="Поиск").click()
        await page.wait_for_url("**/?q=*")
        assert (
            "«привет» — не номер телефона и не лицевой счёт"
            == await page.get_by_role("alert").inner_text()
        )
        await page.screenshot(path=str(tmp_path / "dashboard-ru.png"), full_page=True)


@pytest.mark.smsc
async def test_ops_sees_each_smpp_link_with_its_state_and_rate(
    chromium, sqlite_url, settings_for, gateway_factory, tmp_path
):
    """Two links of a real adapter: MTS bound to a node-smpp SMSC, Beeline pointed at a
    port nobody listens on. The dashboard lists both with their states, and MTS's
    MO per minute from the message log, under Russian headings (the default locale)."""
    import asyncio
    import dataclasses
    import socket

    from sms_gateway.config import link_from_defaults
    from sms_gateway.runner import smpp_adapter
    from tests.integration.smpp_support import SmscPeer, require_peer, smpp_settings

    require_peer()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    gateway = await gateway_factory(settings_for(sqlite_url, ops={"token": OPS_TOKEN}))
    peer = await SmscPeer.start()
    base = smpp_settings(peer.port)
    adapter = smpp_adapter(
        gateway,
        dataclasses.replace(
            base,
            links=(
                link_from_defaults(base, {"name": "mts", "port": peer.port}),
                link_from_defaults(base, {"name": "beeline", "port": dead_port}),
            ),
        ),
    )
    await adapter.start()
    runner = web.AppRunner(
        create_app(gateway, link_state=lambda: adapter.state, links=adapter.links_status),
        access_log=None,
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    served = f"http://{host}:{port}"
    try:
        await peer.wait_bound()
        for i in range(10):
            sequence = await peer.deliver(b"1234567833 1250", source_addr=f"7916000{i:04d}")
            await peer.deliver_resp(sequence)
        await peer.wait_count(lambda e: e.get("command") == "submit_sm", 10)
        await asyncio.sleep(0.3)  # the last "sent" marks
        async with browser_page(chromium, tmp_path / "profile") as page:
            await page.goto(served + "/login")
            await page.get_by_label("Токен доступа").fill(OPS_TOKEN)
            await page.get_by_role("button", name="Войти").click()
            await page.wait_for_url(served + "/")
            headings = [await th.inner_text() for th in await page.locator("#links th").all()]
            mts = page.locator('#links tr[data-link="mts"] td')
            beeline = page.locator('#links tr[data-link="beeline"] td')
            mts_cells = [await cell.inner_text() for cell in await mts.all()]
            beeline_cells = [await cell.inner_text() for cell in await beeline.all()]
            assert "connecting" == await page.locator("#smpp-state").inner_text()
    finally:
        await runner.cleanup()
        await adapter.stop(1.0)
        await peer.close()
    assert ["Канал", "Группа", "Состояние"] == headings[:3]
    assert ["mts", "mts", "bound"] == mts_cells[:3]
    assert ("2.0", "2.0") == (mts_cells[5], mts_cells[6])  # 10 MO and 10 replies in 5 min
    assert ["beeline", "beeline", "connecting", "—"] == beeline_cells[:4]
    assert "refused" in beeline_cells[7].lower(), beeline_cells
