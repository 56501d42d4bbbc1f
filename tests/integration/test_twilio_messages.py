"""Twilio's fields in, TwiML out, and the signature check: the plain functions the
webhook is built from (no database, no server)."""

from __future__ import annotations

from datetime import UTC, datetime
from xml.etree import ElementTree

import pytest
from twilio.request_validator import RequestValidator

from adapters.twilio.messages import (
    BadTwilioRequest,
    _twiml_slow,
    inbound_from_form,
    supersedes,
    twiml_replies,
    twiml_reply,
)
from adapters.twilio.signature import TwilioSignature
from sms_gateway.domain.model import InboundSms

NOW = datetime(2026, 11, 18, 9, 0, tzinfo=UTC)
TOKEN = "token"
PUBLIC_URL = "https://sms.example.ru/twilio/sms"


@pytest.mark.parametrize(
    "text",
    [
        "Приняты показания ЛС 1234567833: Т1 1250 (+66).",
        "a & b < c > d \"quoted\" 'single'",
        "line one\nline two\r\n\ttabbed",
        "🙂 emoji and ]]> cdata end",
        "",
        "\ue000 the placeholder itself",
    ],
)
@pytest.mark.parametrize(
    "callback", [None, 'https://sms.example.ru/twilio/status?reply=7&x="<\'>"\n']
)
def test_twiml_is_exactly_what_messaging_response_renders(text, callback):
    """The pre-rendered TwiML equals MessagingResponse's own output for any text and URL."""
    assert _twiml_slow(text, callback) == twiml_reply(text, callback)


def test_no_reply_is_an_empty_response():
    """No reply due: an empty <Response/>, so Twilio sends nothing."""
    assert '<?xml version="1.0" encoding="UTF-8"?><Response />' == twiml_reply(None)


def test_several_sms_are_one_message_verb_each_with_its_own_status_url():
    """An SMS for several accounts answered with one SMS per account: a <Message> each,
    in order, each reporting its status to its own reply's URL."""
    xml = twiml_replies(
        [("ЛС 1: <ok> & more", "https://x/s?reply=1"), ("ЛС 2", "https://x/s?reply=2")]
    )
    root = ElementTree.fromstring(xml)
    assert [(m.text, m.get("action")) for m in root.iter("Message")] == [
        ("ЛС 1: <ok> & more", "https://x/s?reply=1"),
        ("ЛС 2", "https://x/s?reply=2"),
    ]
    assert twiml_replies([("one", None)]) == twiml_reply("one")


def test_inbound_from_form_maps_twilio_fields():
    """From becomes E.164, To the short number, MessageSid the dedupe id, NumSegments parts."""
    form = {
        "MessageSid": "SM1",
        "From": "79161234567",
        "To": "+15005550006",
        "Body": " 1234567833 1250 ",
        "NumSegments": "2",
    }

    assert InboundSms(
        channel="twilio",
        phone="+79161234567",
        short_number="+15005550006",
        text=" 1234567833 1250 ",
        received_at=NOW,
        external_id="SM1",
        parts=2,
    ) == inbound_from_form(form, NOW)


def test_missing_message_sid_is_refused():
    """Without MessageSid a retry could not be recognised: the request is refused."""
    with pytest.raises(BadTwilioRequest, match="MessageSid is missing"):
        inbound_from_form({"From": "79161234567", "To": "7377", "Body": "x"}, NOW)


@pytest.mark.parametrize(
    ("current", "new", "replaces"),
    [
        (None, "queued", True),
        ("queued", "sent", True),
        ("sent", "delivered", True),
        ("delivered", "sent", False),
        ("failed", "queued", False),
        ("undelivered", "delivered", True),
        ("delivered", "read", True),
    ],
)
def test_furthest_status_wins(current, new, replaces):
    """A late callback never moves a reply's delivery status backwards."""
    assert replaces == supersedes(current, new)


def test_signature_accepts_twilio_port_variants_and_rejects_others():
    """Twilio sometimes signs the URL with an explicit :443; both spellings pass, a
    signature over other parameters does not."""
    check = TwilioSignature(TOKEN, PUBLIC_URL)
    form = {"MessageSid": "SM1", "Body": "1234567833 1250"}
    validator = RequestValidator(TOKEN)

    with_port = validator.compute_signature("https://sms.example.ru:443/twilio/sms", form)
    plain = validator.compute_signature(PUBLIC_URL, form)
    other = validator.compute_signature(PUBLIC_URL, {**form, "Body": "1234567833 9999"})

    assert (True, True, False, False) == (
        check.is_valid(PUBLIC_URL, form, plain),
        check.is_valid(PUBLIC_URL, form, with_port),
        check.is_valid(PUBLIC_URL, form, other),
        check.is_valid(PUBLIC_URL, form, None),
    )


def test_status_url_keeps_the_proxy_prefix():
    """The status callback URL is the webhook's sibling, under the same public prefix."""
    check = TwilioSignature(TOKEN, "https://host.example/gw/twilio/sms")

    assert "https://host.example/gw/twilio/status?reply=42" == check.status_callback_url(42)
