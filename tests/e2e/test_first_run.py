"""A new user's first `serve`: on 127.0.0.1 with no `[ops] token` it prints a dashboard
URL with a token made for this run, and that URL opens the dashboard in Chromium."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.e2e.serve_support import Serve, _free_port
from tests.e2e.test_dashboard import browser_page, chromium  # noqa: F401  (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

DASHBOARD_LINE = re.compile(r"(http://127\.0\.0\.1:\d+)/login\?token=([\w\-]+)")


def first_run_config(path: Path, database_url: str) -> Path:
    """As `make run` serves: loopback, no ops token, console logs (a person reads them)."""
    path.write_text(
        f"""
[gateway]
log_format = "console"
[database]
url = "{database_url}"
[http]
host = "127.0.0.1"
port = {_free_port()}
[smpp]
enabled = false
""",
        encoding="utf-8",
    )
    return path


def wait_for_dashboard_line(log: Path, serve: Serve, timeout_s: float = 60) -> re.Match[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = DASHBOARD_LINE.search(log.read_text(encoding="utf-8", errors="replace"))
        if found:
            return found
        assert serve.process is not None and serve.process.poll() is None, log.read_text()
        time.sleep(0.1)
    raise AssertionError(f"no dashboard URL printed:\n{log.read_text()}")


async def test_serve_on_loopback_without_a_token_prints_a_url_that_opens_the_dashboard(
    chromium,  # noqa: F811  (the fixture imported above)
    tmp_path,
):
    """The printed URL signs the browser in and lands on the Russian dashboard; a wrong
    token in the same URL does not; the token is on that one line and in no log line."""
    config = first_run_config(tmp_path / "gateway.toml", f"sqlite+aiosqlite:///{tmp_path / 'g.db'}")
    log = tmp_path / "serve.log"
    serve = Serve(config, log).start()
    try:
        found = wait_for_dashboard_line(log, serve)
        base, token = found.group(1), found.group(2)
        async with browser_page(chromium, tmp_path / "profile") as page:
            await page.goto(f"{base}/login?token=not-{token}")
            assert "Неверный токен." == await page.get_by_role("alert").inner_text()
            await page.goto(found.group(0))
            await page.wait_for_url(base + "/")
            assert "Последние переписки" == await page.locator("main h2").last.inner_text()
            assert "ru" == await page.locator("html").get_attribute("lang")
        assert 0 == serve.stop()
    finally:
        serve.ensure_dead()

    lines = log.read_text(encoding="utf-8").splitlines()
    assert [f"Ops dashboard (token for this run only): {found.group(0)}"] == [
        line for line in lines if token in line
    ]
    assert any("ops_token_generated" in line for line in lines)
