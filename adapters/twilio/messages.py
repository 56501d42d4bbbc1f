"""Twilio's form fields in, TwiML out: plain conversions without I/O.

Twilio posts an inbound SMS as form fields (MessageSid, From, To, Body, NumSegments,
...) and reads the answer as TwiML. A status callback posts MessageSid, MessageStatus
and, for failures, ErrorCode.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime

from twilio.twiml.messaging_response import MessagingResponse

from sms_gateway.domain.model import InboundSms
from sms_gateway.phones import InvalidPhone, normalize_phone

CHANNEL = "twilio"
MAX_BODY_CHARS = 1600  # Twilio's own limit for one (concatenated) message
MAX_SEGMENTS = 10

# Twilio's message statuses, ordered by how far a message got. A callback may
# overtake an earlier one (sent after delivered); the furthest status wins.
_STATUS_RANK = {
    "accepted": 1,
    "scheduled": 1,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "canceled": 4,
    "partially_delivered": 4,
    "read": 5,
}
DELIVERY_STATUSES = frozenset(_STATUS_RANK)
FAILED_STATUSES = frozenset({"undelivered", "failed", "canceled"})


class BadTwilioRequest(ValueError):
    """A signed request whose fields are not what Twilio sends (400 to the caller)."""


def _field(form: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = form.get(name)
        if value:
            return str(value)
    return None


def inbound_from_form(form: Mapping[str, str], received_at: datetime) -> InboundSms:
    """The `InboundSms` for a Twilio inbound-message webhook."""
    sid = _field(form, "MessageSid", "SmsMessageSid", "SmsSid")
    if sid is None:
        raise BadTwilioRequest("MessageSid is missing")
    if len(sid) > 64:
        raise BadTwilioRequest("MessageSid is too long")
    sender = _field(form, "From")
    if sender is None:
        raise BadTwilioRequest("From is missing")
    try:
        phone = normalize_phone(sender)
    except InvalidPhone as exc:
        raise BadTwilioRequest(f"From is not a phone number: {sender!r}") from exc
    short_number = _field(form, "To")
    if short_number is None:
        raise BadTwilioRequest("To is missing")
    if len(short_number) > 16:
        raise BadTwilioRequest("To is too long")
    body = str(form.get("Body", ""))
    if len(body) > MAX_BODY_CHARS:
        raise BadTwilioRequest(f"Body is longer than {MAX_BODY_CHARS} characters")
    segments_text = str(form.get("NumSegments") or "1")
    if not segments_text.isdigit() or not 1 <= int(segments_text) <= MAX_SEGMENTS:
        raise BadTwilioRequest(f"NumSegments must be 1..{MAX_SEGMENTS}, got {segments_text!r}")
    return InboundSms(
        channel=CHANNEL,
        phone=phone,
        short_number=short_number,
        text=body,
        received_at=received_at,
        external_id=sid,
        parts=int(segments_text),
    )


# XML 1.0 cannot hold C0 controls but tab, line feed and carriage return, lone
# surrogates, or U+FFFE/U+FFFF, not even as character references: one of them makes
# the whole TwiML unreadable to Twilio, and the reply is lost.
_NOT_XML = re.compile(r"[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_safe(value: str) -> str:
    """`value` with every character XML 1.0 cannot hold as "?"."""
    if _NOT_XML.search(value) is None:
        return value
    return _NOT_XML.sub("?", value)


def _twiml_slow(text: str | None, status_callback: str | None) -> str:
    return _rendered([] if text is None else [(text, status_callback)])


def _rendered(replies: list[tuple[str, str | None]]) -> str:
    """MessagingResponse's TwiML: a <Message> per (text, status callback)."""
    response = MessagingResponse()
    for text, status_callback in replies:
        if status_callback is not None:
            response.message(xml_safe(text), action=xml_safe(status_callback), method="POST")
        else:
            response.message(xml_safe(text))
    return str(response.to_xml(xml_declaration=True))


# MessagingResponse builds an ElementTree per call (~0.2 ms, a tenth of a webhook's
# CPU). Its output for a reply differs only in the escaped text and URL, so it is
# rendered once around two placeholder characters and cut there into the pieces that
# surround the values (tests compare with the slow path). The values are put between
# the pieces, never searched for a placeholder: a text holding U+E000 or U+E001 itself
# comes out as typed.
_TEXT_MARK = "\ue000"
_URL_MARK = "\ue001"
_EMPTY = _twiml_slow(None, None)


def _pieces(template: str, *marks: str) -> tuple[str, ...]:
    """`template` cut at each of `marks`, which it holds once each, in this order."""
    pieces: list[str] = []
    rest = template
    for mark in marks:
        before, found, rest = rest.partition(mark)
        assert found and mark not in rest, (template, mark)
        pieces.append(before)
    return (*pieces, rest)


_WITH_ACTION = _pieces(_twiml_slow(_TEXT_MARK, _URL_MARK), _URL_MARK, _TEXT_MARK)
_WITHOUT_ACTION = _pieces(_twiml_slow(_TEXT_MARK, None), _TEXT_MARK)


def _escape_text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escape_attribute(value: str) -> str:
    escaped = _escape_text(value).replace('"', "&quot;")
    return escaped.replace("\r", "&#13;").replace("\n", "&#10;").replace("\t", "&#09;")


def twiml_reply(text: str | None, status_callback: str | None = None) -> str:
    """TwiML answering with `text`, or an empty `<Response/>` when no reply is due.

    `status_callback` goes into the `<Message action=...>` attribute: Twilio posts
    the created outbound message's status changes there (the TwiML Message verb's
    `statusCallback` attribute is deprecated in favour of `action`). Characters XML
    cannot hold are sent as "?", so the TwiML is well-formed whatever the text.
    """
    if text is None:
        return _EMPTY
    if not text:  # MessagingResponse writes an empty <Message />: leave it to it
        return _twiml_slow(text, status_callback)
    body = _escape_text(xml_safe(text))
    if status_callback is None:
        head, tail = _WITHOUT_ACTION
        return f"{head}{body}{tail}"
    head, middle, tail = _WITH_ACTION
    return f"{head}{_escape_attribute(xml_safe(status_callback))}{middle}{body}{tail}"


def twiml_replies(replies: list[tuple[str, str | None]]) -> str:
    """TwiML answering with several SMS, each (text, status callback): the reply to an
    SMS for several accounts that one text could not report (rare, so unhurried)."""
    if len(replies) == 1:
        return twiml_reply(*replies[0])
    return _rendered(replies)


def supersedes(current: str | None, new: str) -> bool:
    """Whether status `new` replaces `current` on a reply (callbacks arrive out of order)."""
    if current is None:
        return True
    return _STATUS_RANK.get(new, 0) >= _STATUS_RANK.get(current, 0)


def status_from_form(form: Mapping[str, str]) -> tuple[str, str, str | None]:
    """(MessageSid, status, error) of a status callback."""
    sid = _field(form, "MessageSid", "SmsSid")
    if sid is None:
        raise BadTwilioRequest("MessageSid is missing")
    if len(sid) > 64:
        raise BadTwilioRequest("MessageSid is too long")
    status = (_field(form, "MessageStatus", "SmsStatus") or "").lower()
    if status not in DELIVERY_STATUSES:
        raise BadTwilioRequest(
            f"MessageStatus must be one of {', '.join(sorted(DELIVERY_STATUSES))}, got {status!r}"
        )
    code = _field(form, "ErrorCode")
    error = None
    if code is not None:
        detail = _field(form, "ErrorMessage")
        error = f"twilio {code}: {detail}" if detail else f"twilio {code}"
    return sid, status, error
