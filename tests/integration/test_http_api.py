"""The ops HTTP surface through aiohttp's test client: health, metrics, the JSON API,
the login cookie and the dashboard page, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select
from structlog.testing import capture_logs

from adapters.db.bulk import export_readings, import_accounts
from adapters.db.schema import meters, readings
from adapters.http import create_app
from adapters.http.auth import FailedAttempts
from adapters.http.keys import AUTH_KEY
from sms_gateway import __version__
from sms_gateway.bootstrap import build_gateway
from sms_gateway.domain.model import InboundSms

OPS_TOKEN = "ops-token-for-tests-7f3a"
BEARER = {"Authorization": f"Bearer {OPS_TOKEN}"}
PHONE = "+79161234567"


async def send(gateway, clock, text, phone=PHONE):
    """One inbound SMS through the real pipeline (CLI channel), at the test clock."""
    return await gateway.pipeline.handle(
        InboundSms(channel="cli", phone=phone, short_number="7377", text=text, received_at=clock())
    )


@pytest.fixture
async def ops(db_url, settings_for, gateway_factory, aiohttp_client):
    gateway = await gateway_factory(settings_for(db_url, ops={"token": OPS_TOKEN}))
    client = await aiohttp_client(create_app(gateway, link_state=lambda: "bound"))
    return client, gateway


# -- health and metrics ---------------------------------------------------------


async def test_health_reports_database_link_and_version(ops):
    """/health is open and says the database is up, the SMPP link state and the version."""
    client, gateway = ops

    response = await client.get("/health")

    expected = {
        "status": "ok",
        "database": "ok",
        "smpp": "bound",
        "links": [],
        "instance": gateway.instance,
        "version": __version__,
    }
    assert (200, expected) == (response.status, await response.json())
    assert gateway.instance.endswith(":8080")  # host:port when instance_name is unset


async def test_health_is_503_when_the_database_is_unreachable(settings_for, aiohttp_client):
    """A database that does not answer makes /health 503 (load balancers take us out)."""
    dead = settings_for("postgresql+asyncpg://gateway@127.0.0.1:1/gateway")
    gateway = await build_gateway(dead, check_schema=False)
    try:
        client = await aiohttp_client(create_app(gateway, link_state=lambda: "unbound"))
        response = await client.get("/health")
        assert (503, "unavailable") == (response.status, (await response.json())["database"])
        # /metrics still answers: a scrape must not fail because the database is down.
        assert 200 == (await client.get("/metrics")).status
    finally:
        await gateway.aclose()


async def test_metrics_expose_the_gateway_registry(ops, clock):
    """/metrics is open Prometheus text with inbound counts by channel and outcome, the
    latency histograms, SMPP counters and queue depths."""
    client, gateway = ops
    await send(gateway, clock, "1234567833 1250")

    response = await client.get("/metrics")
    text = await response.text()

    assert (200, "text/plain") == (response.status, response.content_type)
    for line in (
        'sms_gateway_inbound_messages_total{channel="cli",outcome="accepted"} 1.0',
        "sms_gateway_parse_seconds_count 1.0",
        'sms_gateway_handle_seconds_count{channel="cli"} 1.0',
        "# TYPE sms_gateway_smpp_reconnects_total counter",  # per link: no series yet
        "sms_gateway_outbox_depth 0.0",
        "sms_gateway_inbound_queue_depth 0.0",
    ):
        assert line in text.splitlines(), line


# -- authentication ---------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {OPS_TOKEN}"}],
)
async def test_api_needs_the_ops_token(ops, headers):
    """Without the exact bearer token the API answers 401 JSON and a Bearer challenge."""
    client, _gateway = ops

    response = await client.get("/api/messages", headers=headers)

    assert 401 == response.status
    assert 'Bearer realm="ops"' == response.headers["WWW-Authenticate"]
    assert "a valid ops token is required" in (await response.json())["error"]


async def test_empty_ops_token_locks_the_api(
    sqlite_url, settings_for, gateway_factory, aiohttp_client
):
    """With no [ops] token configured nobody gets in, not even with an empty bearer."""
    gateway = await gateway_factory(settings_for(sqlite_url))
    client = await aiohttp_client(create_app(gateway, link_state=lambda: "disabled"))

    response = await client.get("/api/messages", headers={"Authorization": "Bearer "})
    login = await client.post("/login", data={"token": ""}, allow_redirects=False)

    assert (401, 401) == (response.status, login.status)
    assert "no [ops] token is configured" in (await response.json())["error"]


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "gateway.example.ru"])
async def test_no_token_on_a_non_loopback_host_keeps_the_ops_api_closed(
    host, sqlite_url, settings_for, gateway_factory, aiohttp_client
):
    """`serve` on an address others can reach makes no token up: the settings stay
    tokenless, a warning says the ops API is closed, and the API and login refuse all."""
    from sms_gateway.runner import ops_token_for_run

    with capture_logs() as logs:
        settings, one_run_token = ops_token_for_run(settings_for(sqlite_url, http={"host": host}))
    gateway = await gateway_factory(settings)
    client = await aiohttp_client(create_app(gateway, link_state=lambda: "disabled"))

    api = await client.get("/api/messages", headers={"Authorization": "Bearer "})
    login = await client.get("/login?token=", allow_redirects=False)

    assert (None, "") == (one_run_token, settings.ops.token)
    assert [("ops_api_closed", "warning")] == [(e["event"], e["log_level"]) for e in logs]
    assert (401, 401) == (api.status, login.status)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
async def test_no_token_on_loopback_gets_a_one_run_token_that_opens_the_dashboard(
    host, sqlite_url, settings_for, gateway_factory, aiohttp_client
):
    """On a loopback address a missing token becomes a random one for this run: it opens
    the API as a bearer and the dashboard through GET /login?token=..., which sets the
    session cookie and redirects to /. Nothing is logged with it."""
    from sms_gateway.runner import ops_token_for_run

    with capture_logs() as logs:
        settings, one_run_token = ops_token_for_run(settings_for(sqlite_url, http={"host": host}))
        _again, other_token = ops_token_for_run(settings_for(sqlite_url, http={"host": host}))
    gateway = await gateway_factory(settings)
    client = await aiohttp_client(create_app(gateway, link_state=lambda: "disabled"))

    api = await client.get("/api/messages", headers={"Authorization": f"Bearer {one_run_token}"})
    wrong = await client.get("/login?token=guess", allow_redirects=False)
    login = await client.get(f"/login?token={one_run_token}", allow_redirects=False)
    page = await client.get("/", allow_redirects=False)

    assert one_run_token is not None and len(one_run_token) >= 32
    assert (one_run_token, False) == (settings.ops.token, one_run_token == other_token)
    assert (200, 401) == (api.status, wrong.status)
    assert (303, "/") == (login.status, login.headers["Location"])
    assert 200 == page.status
    assert one_run_token not in repr(logs)


async def test_a_configured_token_is_never_replaced(settings_for, sqlite_url):
    """With `[ops] token` set, `serve` uses it as it is, on loopback or not."""
    from sms_gateway.runner import ops_token_for_run

    settings = settings_for(sqlite_url, ops={"token": OPS_TOKEN})

    assert (settings, None) == ops_token_for_run(settings)


async def test_login_sets_a_strict_httponly_session_cookie_without_the_token(ops):
    """The login form answers a redirect with an HttpOnly, SameSite=Strict cookie that
    does not contain the token; the cookie then opens the API and the dashboard."""
    client, _gateway = ops

    with capture_logs() as logs:
        response = await client.post("/login", data={"token": OPS_TOKEN}, allow_redirects=False)

    assert (303, "/") == (response.status, response.headers["Location"])
    cookie = response.cookies["ops_session"]
    assert ("", True, "Strict", "") == (
        cookie["secure"],
        cookie["httponly"],
        cookie["samesite"],
        cookie["domain"],
    )
    assert OPS_TOKEN not in cookie.value
    assert OPS_TOKEN not in repr(logs)
    assert 200 == (await client.get("/api/messages")).status
    assert 200 == (await client.get("/")).status


async def test_cookie_is_secure_behind_an_https_proxy(ops):
    """Behind a TLS proxy (X-Forwarded-Proto: https) the session cookie is Secure."""
    client, _gateway = ops

    response = await client.post(
        "/login",
        data={"token": OPS_TOKEN},
        headers={"X-Forwarded-Proto": "https"},
        allow_redirects=False,
    )

    assert True is response.cookies["ops_session"]["secure"]


async def test_wrong_login_is_401_and_a_forged_cookie_opens_nothing(ops):
    """A wrong token re-shows the form with 401; a made-up session cookie is ignored."""
    client, _gateway = ops

    response = await client.post("/login", data={"token": "guess"}, allow_redirects=False)
    forged = await client.get("/api/messages", cookies={"ops_session": "99999999999.deadbeef"})

    assert (401, True) == (response.status, "Неверный токен." in await response.text())
    assert 401 == forged.status


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_guessing_the_token_is_throttled_per_address(ops):
    """Five wrong tokens in 15 minutes (form or bearer alike): the address gets 429 with
    Retry-After, even with the right token, until the oldest guess is 15 minutes old."""
    client, _gateway = ops
    clock = _Clock()
    client.server.app[AUTH_KEY].failed_attempts.clock = clock

    for guess in range(3):
        wrong = await client.post("/login", data={"token": f"guess-{guess}"})
        assert 401 == wrong.status
        clock.now += 60
    for guess in range(2):
        wrong_bearer = await client.get(
            "/api/messages", headers={"Authorization": f"Bearer guess-{guess}"}
        )
        assert 401 == wrong_bearer.status
    form = await client.post("/login", data={"token": OPS_TOKEN}, allow_redirects=False)
    api = await client.get("/api/messages", headers=BEARER)

    assert (429, "Слишком много неверных попыток" in await form.text()) == (form.status, True)
    assert (429, str(15 * 60 - 3 * 60)) == (api.status, api.headers["Retry-After"])
    assert "too many wrong ops tokens" in (await api.json())["error"]

    clock.now += 15 * 60 - 3 * 60 + 1  # the first guess is out of the window
    assert 200 == (await client.get("/api/messages", headers=BEARER)).status
    # A success forgets the address's guesses: the next wrong one starts from zero.
    assert 401 == (await client.post("/login", data={"token": "again"})).status
    ok = await client.post("/login", data={"token": OPS_TOKEN}, allow_redirects=False)
    assert 303 == ok.status


async def test_guesses_count_across_instances_on_one_database(
    ops, db_url, settings_for, gateway_factory, aiohttp_client
):
    """Three wrong tokens at one instance and two at another, sharing the database: the
    address is throttled at both, and a success at either clears it for both."""
    first, _gateway = ops
    other_gateway = await gateway_factory(settings_for(db_url, ops={"token": OPS_TOKEN}))
    second = await aiohttp_client(create_app(other_gateway, link_state=lambda: "bound"))
    clock = _Clock()
    clock.now = 2_000_000_000.0
    for client in (first, second):
        client.server.app[AUTH_KEY].failed_attempts.clock = clock

    for guess in range(3):
        assert 401 == (await first.post("/login", data={"token": f"guess-{guess}"})).status
    for guess in range(2):
        wrong = await second.get("/api/messages", headers={"Authorization": f"Bearer g{guess}"})
        assert 401 == wrong.status

    for client in (first, second):
        throttled = await client.get("/api/messages", headers=BEARER)
        assert (429, str(15 * 60)) == (throttled.status, throttled.headers["Retry-After"])

    clock.now += 15 * 60 + 1
    assert 200 == (await second.get("/api/messages", headers=BEARER)).status
    for guess in range(4):  # the success cleared the count everywhere: 4 more are allowed
        assert 401 == (await first.post("/login", data={"token": f"again-{guess}"})).status
    assert 200 == (await second.get("/api/messages", headers=BEARER)).status


async def test_guesses_are_counted_in_memory_while_the_database_is_away(settings_for):
    """No database: each instance still throttles by its own count, per address."""
    dead = await build_gateway(
        settings_for("postgresql+asyncpg://gateway@127.0.0.1:1/gateway"), check_schema=False
    )
    try:
        attempts = FailedAttempts(dead.store, clock=lambda: 2_000_000_000.0)
        assert await attempts.retry_after("192.0.2.7") is None
        for _ in range(5):
            await attempts.failed("192.0.2.7")
        assert 15 * 60 == await attempts.retry_after("192.0.2.7")
        assert await attempts.retry_after("192.0.2.8") is None
        await attempts.succeeded("192.0.2.7")
        assert await attempts.retry_after("192.0.2.7") is None
    finally:
        await dead.aclose()


async def test_stale_cookies_and_missing_tokens_are_not_counted_as_guesses(ops):
    """An expired session cookie or a request without a token is a 401, not a guess."""
    client, _gateway = ops
    for _ in range(10):
        assert 401 == (await client.get("/api/messages")).status
        stale = await client.get("/api/messages", cookies={"ops_session": "1.deadbeef"})
        assert 401 == stale.status
    assert 200 == (await client.get("/api/messages", headers=BEARER)).status


async def test_logout_ends_the_session(ops):
    """After POST /logout the cookie is gone and the dashboard redirects to the login."""
    client, _gateway = ops
    await client.post("/login", data={"token": OPS_TOKEN})

    await client.post("/logout", allow_redirects=False)
    response = await client.get("/", allow_redirects=False)

    assert (303, "/login") == (response.status, response.headers["Location"])


# -- /api/messages ----------------------------------------------------------------


async def test_messages_newest_first_with_cursor_paging(ops, clock):
    """Items come newest first with every documented field; next_cursor walks through
    the older pages and is null on the last one."""
    client, gateway = ops
    for minute, reading in enumerate((1250, 1260, 1270)):
        clock.now += timedelta(minutes=minute)
        await send(gateway, clock, f"1234567833 {reading}")

    first = await (await client.get("/api/messages?limit=4", headers=BEARER)).json()
    second = await (
        await client.get(f"/api/messages?limit=4&cursor={first['next_cursor']}", headers=BEARER)
    ).json()

    assert [6, 5, 4, 3] == [item["id"] for item in first["items"]]
    assert ([2, 1], None) == ([item["id"] for item in second["items"]], second["next_cursor"])
    assert {
        "id": 1,
        "direction": "in",
        "channel": "cli",
        "phone": PHONE,
        "account": "1234567833",
        "text": "1234567833 1250",
        "outcome": "accepted",
        "created_at": "2026-11-18T09:00:00+00:00",
        "reply_to": None,
        "status": "processed",
        "transport_id": None,
        "delivery_status": None,
        "error": None,
    } == second["items"][1]
    reply = second["items"][0]
    assert ("out", 1, "sent") == (reply["direction"], reply["reply_to"], reply["status"])


@pytest.mark.parametrize(
    ("query", "expected_ids"),
    [
        ("phone=8 (916) 123-45-67", [2, 1]),
        ("phone=%2B7 916 123 45 67", [2, 1]),
        ("phone=79031112233", [4, 3]),
        ("account=4440005556", [4, 3]),
        ("outcome=unknown_account", [6, 5]),
        ("since=2026-11-18T10:00:00%2B01:00", [6, 5, 4, 3, 2, 1]),
        ("since=2026-11-18T09:30:00", [6, 5]),
    ],
)
async def test_message_filters(ops, clock, query, expected_ids):
    """phone takes any usual spelling; account, outcome and since narrow the log."""
    client, gateway = ops
    await send(gateway, clock, "1234567833 1250")
    await send(gateway, clock, "4440005556 3100", phone="+79031112233")
    clock.now += timedelta(hours=1)
    await send(gateway, clock, "9999999999 1", phone="+79990001122")

    body = await (await client.get(f"/api/messages?{query}", headers=BEARER)).json()

    assert expected_ids == [item["id"] for item in body["items"]]


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("limit=0", "limit: expected a whole number 1..1000, got '0'"),
        ("limit=1001", "limit: expected a whole number 1..1000, got '1001'"),
        ("limit=ten", "limit: expected a whole number 1..1000, got 'ten'"),
        ("phone=hello", "phone: not a phone number: 'hello'"),
        ("since=yesterday", "since: expected an ISO 8601 time, got 'yesterday'"),
        ("cursor=-5", "cursor: not a cursor this API returned: '-5'"),
        ("account=1234;drop", "account: expected up to 32 letters and digits, got '1234;drop'"),
    ],
)
async def test_bad_parameters_are_a_clear_400(ops, query, error):
    """Each bad parameter answers 400 JSON naming the parameter and what it expects."""
    client, _gateway = ops

    response = await client.get(f"/api/messages?{query}", headers=BEARER)

    assert (400, {"error": error}) == (response.status, await response.json())


async def test_unknown_outcome_lists_the_known_ones(ops):
    """An unknown outcome filter says which outcomes exist."""
    client, _gateway = ops

    response = await client.get("/api/messages?outcome=great", headers=BEARER)

    assert 400 == response.status
    assert "accepted, accepted_next_period," in (await response.json())["error"]


async def test_unknown_route_and_wrong_method_are_json(ops):
    """aiohttp's own 404 and 405 come back as JSON errors too, never an HTML traceback."""
    client, _gateway = ops

    missing = await client.get("/api/nothing-here", headers=BEARER)
    wrong = await client.delete("/health")

    assert (404, {"error": "not found"}) == (missing.status, await missing.json())
    assert (405, {"error": "method not allowed"}) == (wrong.status, await wrong.json())
    assert "GET" in wrong.headers["Allow"]


# -- readings -------------------------------------------------------------------


async def test_account_readings_history(ops, clock):
    """The booked readings of an account's meters, whatever the spelling of the account."""
    client, gateway = ops
    await send(gateway, clock, "5550001112 5500 2150", phone="+79167654321")

    response = await client.get("/api/accounts/5550001112/readings", headers=BEARER)

    assert 200 == response.status
    assert {
        "account": "5550001112",
        "readings": [
            {
                "meter_serial": "12345678",
                "period": "2026-11",
                "values": [5500, 2150],
                "status": "accepted",
                "submitted_at": "2026-11-18T09:00:00+00:00",
                "channel": "cli",
            }
        ],
        # Billing's reading (the accounts file) is older than the SMS: the SMS's is the
        # one the next SMS is compared with; they differ, so ops see both.
        "meters": [
            {
                "meter_serial": "12345678",
                "zones": 2,
                "billing": {"values": [5400, 2100], "read_on": "2026-10-20"},
                "latest_booked": {
                    "period": "2026-11",
                    "values": [5500, 2150],
                    "submitted_at": "2026-11-18T09:00:00+00:00",
                    "channel": "cli",
                },
                "compared_with": "booked",
                "differ": True,
            }
        ],
    } == await response.json()


async def test_unknown_account_is_404(ops):
    """Asking for an account that does not exist is a 404 JSON error."""
    client, _gateway = ops

    response = await client.get("/api/accounts/0000000000/readings", headers=BEARER)

    assert (404, {"error": "unknown account 0000000000"}) == (
        response.status,
        await response.json(),
    )


async def test_export_is_the_cli_csv(ops, clock):
    """The export endpoint serves byte for byte the CSV the CLI export writes."""
    client, gateway = ops
    await send(gateway, clock, "1234567833 1250")
    await send(gateway, clock, "5550001112 5500 2150", phone="+79167654321")
    expected = io.StringIO()
    await export_readings(gateway.store, "2026-11", expected)

    response = await client.get("/api/readings/export?period=2026-11", headers=BEARER)

    assert (200, "text/csv") == (response.status, response.content_type)
    assert 'attachment; filename="readings-2026-11.csv"' == response.headers["Content-Disposition"]
    assert expected.getvalue() == await response.text()
    assert 3 == len(expected.getvalue().splitlines())


async def test_a_big_export_streams_in_pieces_and_is_whole(ops, clock, tmp_path):
    """4,500 readings (more than two read batches): every row arrives, in account order,
    the same bytes as the CLI export, in a chunked response rather than one body."""
    client, gateway = ops
    count = 4_500
    csv_path = tmp_path / "many.csv"
    with csv_path.open("w", encoding="utf-8") as out:
        out.write("account,meter_serial,zones,digits,phones,last_t1,last_t2,last_t3,last_read_on\n")
        for i in range(count):
            out.write(f"{6_000_000_000 + i},{90_000_000 + i},1,6,,1000,,,2026-10-20\n")
    await import_accounts(
        gateway.store, csv_path, gateway.settings.gateway.account_pattern, clock()
    )
    async with gateway.store.transaction() as tx:
        meter_ids = (
            (await tx.conn.execute(select(meters.c.id).where(meters.c.account.like("60000%"))))
            .scalars()
            .all()
        )
        await tx.conn.execute(
            insert(readings),
            [
                {"meter_id": m, "period": "2026-11", "t1": 1100, "status": "accepted",
                 "submitted_at": clock().replace(tzinfo=None), "channel": "smpp"}
                for m in meter_ids
            ],
        )  # fmt: skip
    expected = io.StringIO()
    await export_readings(gateway.store, "2026-11", expected)

    response = await client.get("/api/readings/export?period=2026-11", headers=BEARER)
    body = await response.text()

    assert (200, "chunked") == (response.status, response.headers.get("Transfer-Encoding"))
    assert body == expected.getvalue()
    lines = body.splitlines()
    assert len(lines) == count + 1
    accounts = [line.split(",")[0] for line in lines[1:]]
    assert accounts == sorted(accounts) and len(set(accounts)) == count


@pytest.mark.parametrize("period", ["", "2026-13", "2026-1", "november"])
async def test_export_needs_a_valid_period(ops, period):
    """The period must be YYYY-MM; anything else is a 400 saying so."""
    client, _gateway = ops

    response = await client.get(f"/api/readings/export?period={period}", headers=BEARER)

    assert (400, {"error": f"period: expected YYYY-MM, got {period!r}"}) == (
        response.status,
        await response.json(),
    )


# -- dashboard (server side; the browser test is in tests/e2e) ----------------------


async def test_dashboard_redirects_to_login_without_a_session(ops):
    """The dashboard is behind the token: a visitor without it lands on the login form."""
    client, _gateway = ops

    response = await client.get("/", allow_redirects=False)
    login = await client.get("/login")

    assert (303, "/login") == (response.status, response.headers["Location"])
    assert (200, True) == (login.status, 'name="token"' in await login.text())


async def test_dashboard_masks_phones_until_revealed(ops, clock):
    """Phones show only their last 4 digits; ?reveal=1 shows them in full."""
    client, gateway = ops
    await send(gateway, clock, "1234567833 1250")

    masked = await (await client.get("/", headers=BEARER)).text()
    revealed = await (await client.get("/?reveal=1", headers=BEARER)).text()

    assert ("+*******4567" in masked, PHONE in masked) == (True, False)
    assert PHONE in revealed


async def test_dashboard_search_by_phone_or_account(ops, clock):
    """One search box finds conversations by any phone spelling or by account; text that
    is neither is explained instead of silently matching nothing."""
    client, gateway = ops
    await send(gateway, clock, "1234567833 1250")
    await send(gateway, clock, "4440005556 3100", phone="+79031112233")

    by_phone = await (await client.get("/?q=8 903 111-22-33", headers=BEARER)).text()
    by_account = await (await client.get("/?q=1234567833", headers=BEARER)).text()
    nonsense = await (await client.get("/?q=hello", headers=BEARER)).text()

    assert ("4440005556 3100" in by_phone, "1234567833 1250" in by_phone) == (True, False)
    assert ("1234567833 1250" in by_account, "4440005556 3100" in by_account) == (True, False)
    assert "не номер телефона и не лицевой счёт" in nonsense


async def test_dashboard_counts_per_hour_and_outcome_mix(ops, clock):
    """The dashboard's own queries (hour buckets differ per dialect) count inbound SMS
    per UTC hour and per outcome, replies excluded."""
    from datetime import UTC, datetime

    from adapters.http import queries

    _client, gateway = ops
    await send(gateway, clock, "1234567833 1250")
    clock.now += timedelta(minutes=59)
    await send(gateway, clock, "привет", phone="+79990001122")
    clock.now += timedelta(minutes=2)
    await send(gateway, clock, "4440005556 3100", phone="+79031112233")
    since = datetime(2026, 11, 18, 0, 0, tzinfo=UTC)

    per_hour = await queries.inbound_per_hour(gateway.store, since)
    mix = await queries.outcome_mix(gateway.store, since)

    assert {
        datetime(2026, 11, 18, 9, 0, tzinfo=UTC): 2,
        datetime(2026, 11, 18, 10, 0, tzinfo=UTC): 1,
    } == per_hour
    assert {"accepted": 1, "unparsed": 1, "meter_required": 1} == mix


async def test_dashboard_filters_conversations_by_outcome(ops, clock):
    """Clicking an outcome in the mix (?outcome=...) lists only those conversations; an
    unknown outcome is explained."""
    client, gateway = ops
    await send(gateway, clock, "1234567833 1250")
    await send(gateway, clock, "привет", phone="+79990001122")

    unparsed = await (await client.get("/?outcome=unparsed", headers=BEARER)).text()
    bogus = await (await client.get("/?outcome=bogus", headers=BEARER)).text()

    assert ("привет" in unparsed, "1234567833 1250" in unparsed) == (True, False)
    assert 'href="/?outcome=accepted"' in unparsed
    assert "«bogus» — нет такого результата" in bogus


async def test_message_texts_are_plain_utf8_json(ops, clock):
    """Russian texts come back as readable UTF-8 in the JSON body, not \\u escapes."""
    client, gateway = ops
    await send(gateway, clock, "1234567833 1250")

    response = await client.get("/api/messages?limit=1", headers=BEARER)

    assert "application/json; charset=utf-8" == response.headers["Content-Type"]
    assert "Приняты показания" in (await response.read()).decode("utf-8")


async def test_instances_show_who_is_alive(ops):
    """/api/instances: every serve that ran on the database, alive or not; closed
    without the token."""
    from adapters.db.instances import InstanceRegistry

    client, gateway = ops
    now = datetime.now(UTC)

    def registry(name: str, at: datetime) -> InstanceRegistry:
        return InstanceRegistry(
            gateway.store,
            name,
            dead_after=timedelta(seconds=10),
            redelivery_window=timedelta(hours=1),
            clock=lambda: at,
        )

    await registry(gateway.instance, now).start()
    await registry("gw-old", now - timedelta(minutes=5)).start()
    assert 401 == (await client.get("/api/instances")).status
    response = await client.get("/api/instances", headers=BEARER)
    assert 200 == response.status
    body = await response.json()
    assert gateway.instance == body["self"]
    alive = {row["name"]: row["alive"] for row in body["instances"]}
    assert {gateway.instance: True, "gw-old": False} == alive


# -- the accounts import over HTTP ----------------------------------------------------

IMPORT_HEADER = "account,meter_serial,zones,digits,phones,last_t1,last_t2,last_t3,last_read_on\n"


async def test_billing_pushes_its_accounts_file_over_http(ops):
    """POST /api/accounts/import: closed without the token; a clean file answers the
    counts; a bad one 422 with its lines and changes nothing; a second import while one
    runs 409."""
    client, gateway = ops
    body = IMPORT_HEADER + "9876543210,99887766,1,5,+79165550000,100,,,2026-11-01\n"
    assert 401 == (await client.post("/api/accounts/import", data=body)).status
    headers = {**BEARER, "Content-Type": "text/csv"}
    done = await client.post("/api/accounts/import", data=body, headers=headers)
    assert 200 == done.status
    counts = await done.json()
    assert (1, 1, 1, 1) == (
        counts["rows"], counts["accounts_created"], counts["meters_created"], counts["phones_added"]
    )  # fmt: skip

    bad = IMPORT_HEADER + "9876543211,1,1,5,,100,,,2026-11-01\n" + "9876543212,2,4,5,,,,,\n"
    rejected = await client.post("/api/accounts/import", data=bad, headers=headers)
    assert 422 == rejected.status
    answer = await rejected.json()
    assert [3] == [problem["line"] for problem in answer["problems"]], answer
    assert 1 == answer["total_problems"]
    async with gateway.store.reader() as tx:
        assert 6 + 1 == await tx.count_accounts()  # the 6 demo accounts and the first file's

    wrong_type = await client.post(
        "/api/accounts/import", data=body, headers={**BEARER, "Content-Type": "application/json"}
    )
    assert 400 == wrong_type.status

    release = asyncio.Event()

    async def slow_body():
        yield IMPORT_HEADER.encode()
        await release.wait()
        yield b"9876543213,3,1,5,,,,,\n"

    first = asyncio.create_task(
        client.post("/api/accounts/import", data=slow_body(), headers=headers)
    )
    await asyncio.sleep(0.5)
    second = await client.post("/api/accounts/import", data=body, headers=headers)
    release.set()
    assert 409 == second.status, await second.text()
    assert 200 == (await first).status


async def test_a_prune_over_http_that_would_close_too_many_is_refused(ops):
    """POST /api/accounts/import?prune=true with a file of one of the seven demo meters:
    422 with the reason and the numbers, nothing changed; with prune_max_share high
    enough it goes through; a share outside 0..1 is a 400."""
    client, gateway = ops
    headers = {**BEARER, "Content-Type": "text/csv"}
    body = IMPORT_HEADER + "1234567833,00112233,1,5,+79161234567,1184,,,2026-10-20\n"

    async def open_meters() -> int:
        async with gateway.store.reader() as tx:
            return len(
                (await tx.conn.execute(select(meters.c.id).where(meters.c.closed_at.is_(None))))
                .scalars()
                .all()
            )

    refused = await client.post("/api/accounts/import?prune=true", data=body, headers=headers)
    assert 422 == refused.status
    answer = await refused.json()
    assert {
        "error": "prune refused, nothing imported",
        "reason": "the file would close 6 of 7 open meters (85.7 %) and 5 accounts, more "
        "than the limit of 10 % ([billing] prune_max_share). A truncated or partial file? "
        "If it is billing's full list, run again with --prune-max-share 0.86 (over HTTP: "
        "prune_max_share=0.86)",
        "meters_to_close": 6,
        "open_meters": 7,
        "accounts_to_close": 5,
        "prune_max_share": 0.1,
        "prune_max_share_needed": 0.86,
    } == answer
    assert 7 == await open_meters()

    too_little = await client.post(
        "/api/accounts/import?prune=true&prune_max_share=0.85", data=body, headers=headers
    )
    assert 422 == too_little.status
    assert 7 == await open_meters()
    for bad in ("2", "-0.1", "ten", "nan"):
        wrong = await client.post(
            f"/api/accounts/import?prune=true&prune_max_share={bad}", data=body, headers=headers
        )
        assert (
            400,
            {"error": f"prune_max_share: expected a share 0..1 (0.1 = 10 %), got {bad!r}"},
        ) == (
            wrong.status,
            await wrong.json(),
        )

    done = await client.post(
        "/api/accounts/import?prune=true&prune_max_share=0.86", data=body, headers=headers
    )
    assert 200 == done.status
    counts = await done.json()
    assert (6, 5, 1) == (
        counts["meters_closed"],
        counts["accounts_closed"],
        counts["meters_unchanged"],
    )
    assert 1 == await open_meters()
