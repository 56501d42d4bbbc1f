"""The Twilio webhook and status callbacks through aiohttp's test client.

Requests are signed (or forged) with twilio's own RequestValidator against the public
URL, exactly as Twilio signs them; the database is real (SQLite and PostgreSQL).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import select
from twilio.request_validator import RequestValidator

import adapters.twilio.webhook as twilio_webhook
from adapters.db.schema import messages, readings
from adapters.http import create_app
from adapters.twilio import TwilioRestSender
from sms_gateway.domain.model import InboundSms
from sms_gateway.errors import ConfigError

AUTH_TOKEN = "twilio-auth-token-for-tests"
PUBLIC_URL = "https://sms.example.ru/gw/twilio/sms"
STATUS_URL = "https://sms.example.ru/gw/twilio/status"
TWILIO_NUMBER = "+15005550006"
PHONE = "+79161234567"
ACCEPTED = "Приняты показания ЛС 1234567833: Т1 1250 (+66)."


def twilio_settings(**overrides: Any) -> dict[str, Any]:
    return {"enabled": True, "auth_token": AUTH_TOKEN, "public_url": PUBLIC_URL, **overrides}


def sms_form(sid: str, body: str = "1234567833 1250", sender: str = "79161234567") -> dict:
    return {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": sender,
        "To": TWILIO_NUMBER,
        "Body": body,
        "NumSegments": "1",
        "NumMedia": "0",
    }


def sign(url: str, form: dict, token: str = AUTH_TOKEN) -> dict[str, str]:
    return {"X-Twilio-Signature": RequestValidator(token).compute_signature(url, form)}


async def post_sms(client: Any, form: dict, headers: dict | None = None) -> Any:
    return await client.post(
        "/twilio/sms", data=form, headers=sign(PUBLIC_URL, form) if headers is None else headers
    )


async def post_status(client: Any, form: dict, reply_id: int | None, token: str = AUTH_TOKEN):
    query = f"?reply={reply_id}" if reply_id is not None else ""
    return await client.post(
        f"/twilio/status{query}", data=form, headers=sign(STATUS_URL + query, form, token)
    )


def action_reply_id(twiml: str) -> int:
    found = re.search(r'action="https://sms\.example\.ru/gw/twilio/status\?reply=(\d+)"', twiml)
    assert found is not None, twiml
    return int(found.group(1))


async def table_rows(gateway: Any, table: Any) -> list[Any]:
    async with gateway.store.reader() as tx:
        return list((await tx.conn.execute(select(table).order_by(table.c.id))).all())


@pytest.fixture
async def twilio_client(db_url, settings_for, gateway_factory, aiohttp_client):
    gateway = await gateway_factory(settings_for(db_url, twilio=twilio_settings()))
    client = await aiohttp_client(create_app(gateway, link_state=lambda: "disabled"))
    return client, gateway


async def test_signed_inbound_sms_is_booked_and_answered_with_twiml(twilio_client):
    """A correctly signed webhook books the reading and answers TwiML with our reply,
    whose <Message action> points at the public status URL carrying the reply id."""
    client, gateway = twilio_client

    response = await post_sms(client, sms_form("SM0001"))

    assert 200 == response.status
    assert "text/xml" == response.content_type
    twiml = await response.text()
    assert "<Message action=" in twiml and f">{ACCEPTED}</Message>" in twiml
    rows = await table_rows(gateway, messages)
    assert [("in", "twilio", PHONE, "SM0001", TWILIO_NUMBER)] == [
        (r.direction, r.channel, r.phone, r.external_id, r.short_number)
        for r in rows
        if r.direction == "in"
    ]
    reply = next(r for r in rows if r.direction == "out")
    assert (reply.id, ACCEPTED) == (action_reply_id(twiml), reply.text)
    assert [(1250,)] == [(r.t1,) for r in await table_rows(gateway, readings)]


@pytest.mark.parametrize(
    ("case", "headers"),
    [
        ("missing signature", {}),
        ("signed with another token", sign(PUBLIC_URL, sms_form("SM0002"), "not-the-token")),
        ("signed for the local URL", sign("http://127.0.0.1/twilio/sms", sms_form("SM0002"))),
        ("signed for another body", sign(PUBLIC_URL, sms_form("SM0002", body="1234567833 9999"))),
        ("garbage signature", {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"}),
    ],
)
async def test_forged_or_unsigned_webhook_is_403_and_stores_nothing(twilio_client, case, headers):
    """Anything but Twilio's signature over the public URL and these exact fields is
    refused with 403 before the message reaches the pipeline."""
    client, gateway = twilio_client

    response = await post_sms(client, sms_form("SM0002"), headers=headers)

    assert 403 == response.status, case
    assert {"error": "missing or invalid X-Twilio-Signature"} == await response.json()
    assert [] == await table_rows(gateway, messages)


async def test_during_a_token_rotation_both_tokens_sign_and_no_third(
    db_url, settings_for, gateway_factory, aiohttp_client
):
    """With previous_auth_token set, webhooks signed with the old or the new token are
    taken (Twilio switches when the new one is promoted); any other token is a 403."""
    settings = settings_for(
        db_url, twilio=twilio_settings(auth_token="new-token", previous_auth_token=AUTH_TOKEN)
    )
    gateway = await gateway_factory(settings)
    client = await aiohttp_client(create_app(gateway, link_state=lambda: "disabled"))
    before, after, forged = sms_form("SM0101"), sms_form("SM0102"), sms_form("SM0103")

    signed_old = await post_sms(client, before, headers=sign(PUBLIC_URL, before, AUTH_TOKEN))
    signed_new = await post_sms(client, after, headers=sign(PUBLIC_URL, after, "new-token"))
    signed_other = await post_sms(client, forged, headers=sign(PUBLIC_URL, forged, "other"))

    assert (200, 200, 403) == (signed_old.status, signed_new.status, signed_other.status)
    inbound = [r for r in await table_rows(gateway, messages) if r.direction == "in"]
    assert 2 == len(inbound)


async def test_retried_webhook_books_once_and_returns_the_same_twiml(twilio_client):
    """Twilio retrying the same MessageSid gets byte-identical TwiML and books nothing
    twice: one inbound row, one reply, one reading."""
    client, gateway = twilio_client
    form = sms_form("SM0003")

    first = await (await post_sms(client, form)).text()
    again = await post_sms(client, form)

    assert (200, first) == (again.status, await again.text())
    rows = await table_rows(gateway, messages)
    assert ["in", "out"] == [r.direction for r in rows]
    assert 1 == len(await table_rows(gateway, readings))


async def test_opted_out_phone_gets_an_empty_response(twilio_client):
    """After STOP, a reading is booked but the confirmation is silenced: the webhook
    answers an empty <Response/> (no <Message>, so Twilio sends nothing)."""
    client, _gateway = twilio_client
    stop = await post_sms(client, sms_form("SM0004", body="СТОП"))
    assert "<Message" in await stop.text()

    response = await post_sms(client, sms_form("SM0005"))

    assert 200 == response.status
    assert '<?xml version="1.0" encoding="UTF-8"?><Response />' == await response.text()


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("From", "not-a-phone", "From is not a phone number: 'not-a-phone'"),
        ("NumSegments", "many", "NumSegments must be 1..10, got 'many'"),
        ("To", "", "To is missing"),
    ],
)
async def test_signed_but_malformed_webhook_is_a_clear_400(twilio_client, field, value, error):
    """A correctly signed request with fields Twilio never sends is a 400 naming the field."""
    client, gateway = twilio_client
    form = {**sms_form("SM0006"), field: value}

    response = await post_sms(client, form)

    assert (400, {"error": error}) == (response.status, await response.json())
    assert [] == await table_rows(gateway, messages)


async def test_status_callbacks_link_twilio_sid_and_keep_the_furthest_status(twilio_client):
    """Status callbacks to the action URL land on our reply row: the first links
    Twilio's MessageSid, a late 'sent' does not undo 'delivered'."""
    client, gateway = twilio_client
    reply_id = action_reply_id(await (await post_sms(client, sms_form("SM0007"))).text())
    outbound = {"MessageSid": "SM9007", "AccountSid": "AC" + "0" * 32, "To": PHONE}

    statuses = []
    for status in ("queued", "delivered", "sent"):
        response = await post_status(client, {**outbound, "MessageStatus": status}, reply_id)
        statuses.append((response.status, (await response.json())["recorded"]))

    assert [(200, True)] * 3 == statuses
    reply = next(r for r in await table_rows(gateway, messages) if r.id == reply_id)
    assert ("SM9007", "delivered", None) == (reply.transport_id, reply.delivery_status, reply.error)


async def test_failed_status_records_twilio_error_and_matches_by_sid(twilio_client):
    """A callback without our reply id (REST sends) is matched by the MessageSid linked
    before; a failure keeps Twilio's error code and message."""
    client, gateway = twilio_client
    reply_id = action_reply_id(await (await post_sms(client, sms_form("SM0008"))).text())
    base = {"MessageSid": "SM9008", "AccountSid": "AC" + "0" * 32}
    await post_status(client, {**base, "MessageStatus": "sent"}, reply_id)

    failed = {**base, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    response = await post_status(client, {**failed, "ErrorMessage": "Unreachable handset"}, None)

    assert 200 == response.status
    reply = next(r for r in await table_rows(gateway, messages) if r.id == reply_id)
    assert ("undelivered", "twilio 30003: Unreachable handset") == (
        reply.delivery_status,
        reply.error,
    )


async def test_forged_status_callback_is_403_and_changes_nothing(twilio_client):
    """A status callback not signed with our token is refused and leaves the row as it was."""
    client, gateway = twilio_client
    reply_id = action_reply_id(await (await post_sms(client, sms_form("SM0009"))).text())
    form = {"MessageSid": "SM9009", "MessageStatus": "failed"}

    response = await post_status(client, form, reply_id, token="forged")

    assert 403 == response.status
    reply = next(r for r in await table_rows(gateway, messages) if r.id == reply_id)
    assert (None, None) == (reply.transport_id, reply.delivery_status)


async def test_status_callback_for_an_unknown_reply_is_acknowledged(twilio_client):
    """Twilio gets 200 for a reply we do not know (it would only retry), with recorded false;
    an unknown status name is a 400."""
    client, _gateway = twilio_client
    form = {"MessageSid": "SM9010", "MessageStatus": "delivered"}

    unknown = await post_status(client, form, 424242)
    bad = await post_status(client, {**form, "MessageStatus": "teleported"}, 424242)

    assert (200, {"recorded": False, "status": "delivered"}) == (
        unknown.status,
        await unknown.json(),
    )
    assert 400 == bad.status


async def test_database_outage_answers_503_with_retry_after(settings_for, aiohttp_client):
    """With the database unreachable the webhook stores nothing and answers 503 with
    Retry-After, so Twilio (with connection overrides or a fallback URL) tries again."""
    from sms_gateway.bootstrap import build_gateway

    dead = "postgresql+asyncpg://gateway@127.0.0.1:1/gateway"
    gateway = await build_gateway(settings_for(dead, twilio=twilio_settings()), check_schema=False)
    try:
        client = await aiohttp_client(create_app(gateway, link_state=lambda: "disabled"))
        response = await post_sms(client, sms_form("SM0011"))
        assert (503, "5") == (response.status, response.headers["Retry-After"])
        assert {"error": "temporarily unavailable, retry"} == await response.json()
    finally:
        await gateway.aclose()


async def test_slow_handling_answers_503_in_time_and_the_retry_gets_the_reply(
    twilio_client, monkeypatch, aiohttp_client
):
    """Past the deadline the webhook answers 503 well inside Twilio's 15 s, the handling
    finishes in the background, and Twilio's retry gets the stored reply: booked once."""
    _client, gateway = twilio_client
    monkeypatch.setattr(twilio_webhook, "HANDLE_DEADLINE_S", 0.3)
    handle = gateway.pipeline.handle
    slow_once = asyncio.Event()

    async def slow_handle(inbound):
        if not slow_once.is_set():
            slow_once.set()
            await asyncio.sleep(0.6)
        return await handle(inbound)

    monkeypatch.setattr(gateway.pipeline, "handle", slow_handle)
    client = await aiohttp_client(create_app(gateway, link_state=lambda: "disabled"))

    first = await post_sms(client, sms_form("SM0012"))
    for _ in range(250):  # the first handling finishes in the background
        if any(r.direction == "out" for r in await table_rows(gateway, messages)):
            break
        await asyncio.sleep(0.02)
    retry = await post_sms(client, sms_form("SM0012"))

    assert 503 == first.status
    assert (200, True) == (retry.status, f">{ACCEPTED}</Message>" in await retry.text())
    assert 1 == len(await table_rows(gateway, readings))


@pytest.mark.parametrize(
    ("twilio", "problem"),
    [
        ({"auth_token": ""}, "[twilio] auth_token: empty while twilio is enabled"),
        ({"public_url": ""}, "[twilio] public_url: empty while twilio is enabled"),
        ({"public_url": "/twilio/sms"}, "[twilio] public_url: the Twilio public URL is not"),
        ({"reply_mode": "rest"}, "[twilio] account_sid: needed with reply_mode = rest"),
    ],
)
async def test_twilio_without_its_secrets_refuses_to_start(
    sqlite_url, settings_for, gateway_factory, twilio, problem
):
    """Enabled Twilio with an empty auth token (or no usable public URL) is a start-up
    error, never an open webhook."""
    gateway = await gateway_factory(settings_for(sqlite_url, twilio=twilio_settings(**twilio)))

    with pytest.raises(ConfigError) as raised:
        create_app(gateway, link_state=lambda: "disabled")

    assert [True] == [p.startswith(problem) for p in raised.value.problems]


async def test_twilio_routes_absent_when_disabled(
    sqlite_url, settings_for, gateway_factory, aiohttp_client
):
    """With [twilio] enabled = false there is no webhook to attack: 404 JSON."""
    gateway = await gateway_factory(settings_for(sqlite_url))
    client = await aiohttp_client(create_app(gateway, link_state=lambda: "disabled"))

    response = await post_sms(client, sms_form("SM0013"))

    assert (404, {"error": "not found"}) == (response.status, await response.json())


# -- reply_mode = "rest" ----------------------------------------------------------


@pytest.fixture
async def fake_twilio_api(aiohttp_server):
    """A local stand-in for api.twilio.com's Messages resource on 127.0.0.1."""
    received: list[dict[str, str]] = []
    refuse = {"to": None}

    async def create_message(request: web.Request) -> web.Response:
        form = dict(await request.post())
        received.append({**form, "account": request.match_info["account"]})
        if form.get("To") == refuse["to"]:
            return web.json_response(
                {"code": 21211, "message": "Invalid 'To' Phone Number", "status": 400}, status=400
            )
        sid = f"SM{len(received):032d}"
        return web.json_response(
            {"sid": sid, "status": "queued", "to": form["To"], "from": form["From"]}, status=201
        )

    app = web.Application()
    app.router.add_post("/2010-04-01/Accounts/{account}/Messages.json", create_message)
    server = await aiohttp_server(app, host="127.0.0.1")
    return server, received, refuse


async def wait_for_send(gateway, reply_id):
    """The reply row once the background REST send has reported (sid or error)."""
    for _ in range(200):
        row = next(r for r in await table_rows(gateway, messages) if r.id == reply_id)
        if row.transport_id is not None or row.status == "failed":
            return row
        await asyncio.sleep(0.02)
    raise AssertionError(f"reply {reply_id} was never sent")


@pytest.fixture
async def rest_client(sqlite_url, settings_for, gateway_factory, aiohttp_client, fake_twilio_api):
    server, received, refuse = fake_twilio_api
    twilio = twilio_settings(reply_mode="rest", account_sid="AC" + "1" * 32)
    gateway = await gateway_factory(settings_for(sqlite_url, twilio=twilio))
    sender = TwilioRestSender(
        twilio["account_sid"], AUTH_TOKEN, api_base_url=str(server.make_url("/"))
    )
    app = create_app(gateway, link_state=lambda: "disabled", twilio_sender=sender)
    return await aiohttp_client(app), gateway, received, refuse


async def test_rest_mode_answers_empty_twiml_and_sends_through_the_rest_client(rest_client):
    """With reply_mode = rest the webhook answers <Response/> at once and the reply goes
    out through Twilio's REST client, recorded as sent under Twilio's MessageSid."""
    client, gateway, received, _refuse = rest_client

    response = await post_sms(client, sms_form("SM0020"))

    assert '<?xml version="1.0" encoding="UTF-8"?><Response />' == await response.text()
    reply = await wait_for_send(gateway, 2)
    assert [
        {
            "To": PHONE,
            "From": TWILIO_NUMBER,
            "Body": ACCEPTED,
            "StatusCallback": f"{STATUS_URL}?reply={reply.id}",
            "account": "AC" + "1" * 32,
        }
    ] == received
    assert (f"SM{1:032d}", "sent") == (reply.transport_id, reply.status)


async def test_rest_mode_marks_a_refused_reply_failed(rest_client):
    """A reply Twilio refuses (400) is marked failed with Twilio's reason, not retried."""
    client, gateway, received, refuse = rest_client
    refuse["to"] = PHONE

    await post_sms(client, sms_form("SM0021"))

    reply = await wait_for_send(gateway, 2)
    assert (1, "failed") == (len(received), reply.status)
    assert reply.error.startswith("twilio refused the message: ")


async def test_rest_mode_sends_a_reply_left_unsent(
    sqlite_url, settings_for, gateway_factory, aiohttp_client, fake_twilio_api, monkeypatch, clock
):
    """A reply stored while no REST send ran (the process died between the commit and
    the send) is found in the outbox by the sweep and sent, once."""
    server, received, _refuse = fake_twilio_api
    monkeypatch.setattr(twilio_webhook, "OUTBOX_SWEEP_S", 0.05)
    twilio = twilio_settings(reply_mode="rest", account_sid="AC" + "1" * 32)
    gateway = await gateway_factory(settings_for(sqlite_url, twilio=twilio))
    left = await gateway.pipeline.handle(
        InboundSms("twilio", PHONE, TWILIO_NUMBER, "1234567833 1250", clock(), external_id="SM9")
    )
    assert (
        "pending"
        == next(r for r in await table_rows(gateway, messages) if r.id == left.outbound_id).status
    )
    sender = TwilioRestSender(
        twilio["account_sid"], AUTH_TOKEN, api_base_url=str(server.make_url("/"))
    )
    await aiohttp_client(create_app(gateway, link_state=lambda: "disabled", twilio_sender=sender))

    reply = await wait_for_send(gateway, left.outbound_id)
    await asyncio.sleep(0.2)  # a few more sweeps: nothing is sent twice
    assert (1, "sent", ACCEPTED) == (len(received), reply.status, received[0]["Body"])


async def test_metrics_count_twilio_traffic(twilio_client):
    """/metrics shows the Twilio message by outcome and the forged request by result."""
    client, _gateway = twilio_client
    await post_sms(client, sms_form("SM0030"))
    await post_sms(client, sms_form("SM0031"), headers={})

    text = await (await client.get("/metrics")).text()

    assert 'sms_gateway_inbound_messages_total{channel="twilio",outcome="accepted"} 1.0' in text
    assert 'sms_gateway_twilio_webhooks_total{endpoint="sms",result="forbidden"} 1.0' in text
    assert 'sms_gateway_replies_total{channel="twilio",result="sent"} 1.0' in text
