"""The Twilio webhooks: `POST /twilio/sms` (inbound SMS) and `POST /twilio/status`.

    Twilio form post -> signature check against [twilio] public_url (403 when wrong)
    -> InboundSms(channel="twilio", external_id=MessageSid)
    -> gateway.pipeline.handle (the same pipeline as SMPP; dedupes on MessageSid)
    -> TwiML: <Message action=".../twilio/status?reply=ID"> or an empty <Response/>

Decisions:
- Database outage (TemporaryFailure): 503 with Retry-After. Nothing is acknowledged
  that was not stored, Twilio shows the failure in its debugger, calls the number's
  fallback URL if one is set, and retries when the webhook URL carries connection
  overrides (e.g. `#rc=2&rp=all`). A retry is safe: the pipeline dedupes on
  MessageSid and answers a redelivery with the stored reply.
- Twilio gives up after 15 s. Handling gets HANDLE_DEADLINE_S; past it we answer 503
  but let the handling finish in the background (it is not cancelled halfway), so a
  retry finds the stored reply.
- reply_mode = "rest": the webhook answers an empty <Response/> at once and the reply
  goes out through the REST client, with the same status callback URL.
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from collections.abc import Coroutine
from typing import Any, ClassVar

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from adapters.twilio.delivery import record_twilio_status
from adapters.twilio.messages import (
    FAILED_STATUSES,
    BadTwilioRequest,
    inbound_from_form,
    status_from_form,
    twiml_replies,
    twiml_reply,
)
from adapters.twilio.rest import TwilioRejected, TwilioRestSender
from adapters.twilio.signature import (
    REPLY_PARAMETER,
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    TwilioSignature,
)
from sms_gateway.bootstrap import Gateway
from sms_gateway.domain.model import InboundSms, Reply
from sms_gateway.errors import TemporaryFailure
from sms_gateway.phones import mask_phone

log = structlog.get_logger("adapters.twilio")

HANDLE_DEADLINE_S = 10.0
RETRY_AFTER_S = "5"
REST_ATTEMPTS = 3
REST_BACKOFF_S = 1.0
# How often REST mode looks for replies left unsent (e.g. by a crash).
OUTBOX_SWEEP_S = 5.0
TWIML = "text/xml"


class TwilioMetrics:
    """Twilio's own counters, on the gateway's registry (one set per registry)."""

    _by_registry: ClassVar[weakref.WeakKeyDictionary[CollectorRegistry, TwilioMetrics]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, registry: CollectorRegistry) -> None:
        self.webhooks = Counter(
            "sms_gateway_twilio_webhooks",
            "Twilio webhook requests by endpoint and result",
            ["endpoint", "result"],
            registry=registry,
        )
        self.delivery_statuses = Counter(
            "sms_gateway_twilio_delivery_statuses",
            "Twilio status callbacks by message status",
            ["status"],
            registry=registry,
        )

    @classmethod
    def of(cls, registry: CollectorRegistry) -> TwilioMetrics:
        # Registering the same names twice raises; apps built twice share one set.
        if registry not in cls._by_registry:
            cls._by_registry[registry] = cls(registry)
        return cls._by_registry[registry]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _unavailable(message: str) -> web.Response:
    return web.json_response({"error": message}, status=503, headers={"Retry-After": RETRY_AFTER_S})


class TwilioWebhook:
    """The aiohttp handlers for Twilio; `close()` waits for work still in flight."""

    def __init__(
        self,
        gateway: Gateway,
        signature: TwilioSignature,
        sender: TwilioRestSender | None = None,
        deadline_s: float | None = None,
    ) -> None:
        self.gateway = gateway
        self.signature = signature
        self.sender = sender
        self.deadline_s = HANDLE_DEADLINE_S if deadline_s is None else deadline_s
        self.metrics = TwilioMetrics.of(gateway.metrics.registry)
        # Labelled children looked up once: labels() costs more than the increment.
        self._sms_ok = self.metrics.webhooks.labels("sms", "ok")
        self._replies_sent = gateway.metrics.replies.labels("twilio", "sent")
        self._tasks: set[asyncio.Task[Any]] = set()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/twilio/sms", self.sms)
        app.router.add_post("/twilio/status", self.status)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=HANDLE_DEADLINE_S)
        if self.sender is not None:
            await self.sender.aclose()

    def _spawn(
        self, coro: Coroutine[Any, Any, Any], context: contextvars.Context | None = None
    ) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, context=context)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Whoever waited for it has answered already (503); the log keeps the cause.
            log.warning("twilio_background_failed", error=repr(task.exception()))

    async def _signed_form(self, request: web.Request, url: str, endpoint: str) -> Any:
        """The form fields, or None when the signature is missing or wrong."""
        signature = request.headers.get(SIGNATURE_HEADER)
        if not signature:
            self.metrics.webhooks.labels(endpoint, "forbidden").inc()
            return None
        form = await request.post()
        settings_header = request.headers.get(SIGNATURE_SETTINGS_HEADER)
        if not self.signature.is_valid(url, form, signature, settings_header):
            self.metrics.webhooks.labels(endpoint, "forbidden").inc()
            log.warning("twilio_signature_rejected", endpoint=endpoint, url=url)
            return None
        return form

    # -- POST /twilio/sms ------------------------------------------------------

    async def sms(self, request: web.Request) -> web.Response:
        form = await self._signed_form(request, self.signature.sms_url, "sms")
        if form is None:
            return _error(403, "missing or invalid X-Twilio-Signature")
        try:
            inbound = inbound_from_form(form, self.gateway.pipeline.clock())
        except BadTwilioRequest as exc:
            self.metrics.webhooks.labels("sms", "bad_request").inc()
            return _error(400, str(exc))
        sid = inbound.external_id
        # The pipeline's log lines carry the channel and MessageSid: bound in a copy of
        # the context the handling task runs in (cheaper than binding and resetting).
        context = contextvars.copy_context()
        context.run(structlog.contextvars.bind_contextvars, channel="twilio", message_sid=sid)
        handling = self._spawn(self.gateway.pipeline.handle(inbound), context)
        try:
            reply = await asyncio.wait_for(asyncio.shield(handling), self.deadline_s)
        except TemporaryFailure as exc:
            self.metrics.webhooks.labels("sms", "unavailable").inc()
            log.warning("twilio_inbound_deferred", message_sid=sid, reason=str(exc))
            return _unavailable("temporarily unavailable, retry")
        except TimeoutError:
            self.metrics.webhooks.labels("sms", "timeout").inc()
            log.warning("twilio_inbound_slow", message_sid=sid, deadline_s=self.deadline_s)
            return _unavailable("still processing, retry")
        self._sms_ok.inc()
        return web.Response(text=self._answer(inbound, reply), content_type=TWIML)

    def _answer(self, inbound: InboundSms, reply: Reply) -> str:
        """The TwiML for `reply`, starting the REST send when replies do not go inline."""
        if reply.text is None or reply.outbound_id is None:
            return twiml_reply(None)
        replies = [(reply.text, reply.outbound_id), *reply.further]
        if self.sender is None:
            if reply.extra.get("redelivery") != "true":
                self._replies_sent.inc(len(replies))
            return twiml_replies(
                [
                    (text, self.signature.status_callback_url(outbound_id))
                    for text, outbound_id in replies
                ]
            )
        if reply.extra.get("redelivery") != "true":
            for text, outbound_id in replies:
                callback = self.signature.status_callback_url(outbound_id)
                self._spawn(self._send_rest(inbound, text, outbound_id, callback))
        return twiml_reply(None)

    async def _send_rest(
        self, inbound: InboundSms, text: str, reply_id: int, callback: str
    ) -> None:
        # Claimed first: the outbox sweep may already have taken this reply.
        if await self.gateway.outbox.claim_one(reply_id):
            await self._send_claimed(inbound.phone, inbound.short_number, text, reply_id, callback)

    async def _send_claimed(
        self, phone: str, short_number: str, text: str, reply_id: int, callback: str
    ) -> None:
        assert self.sender is not None
        outbox = self.gateway.outbox
        error = ""
        for attempt in range(1, REST_ATTEMPTS + 1):
            try:
                sid = await self.sender.send(phone, short_number, text, callback)
            except TwilioRejected as exc:
                error = str(exc)
                break
            except TemporaryFailure as exc:
                error = str(exc)
                await asyncio.sleep(REST_BACKOFF_S * 2 ** (attempt - 1))
                continue
            self._replies_sent.inc()
            await outbox.mark_sent(reply_id, sid)
            log.info("twilio_reply_sent", reply_id=reply_id, sid=sid, attempt=attempt)
            return
        self.gateway.metrics.replies.labels("twilio", "failed").inc()
        await outbox.mark_failed(reply_id, error)
        log.warning("twilio_reply_failed", reply_id=reply_id, phone=mask_phone(phone), error=error)

    async def sweep_outbox(self) -> None:
        """REST mode: send replies nobody is sending (the process died before or while
        sending them; a claim left by a dead sender is released after claim_timeout_s)."""
        while True:
            try:
                for outbound in await self.gateway.outbox.claim("twilio", 50):
                    callback = self.signature.status_callback_url(outbound.id)
                    self._spawn(
                        self._send_claimed(
                            outbound.phone, outbound.short_number, outbound.text, outbound.id,
                            callback,
                        )
                    )  # fmt: skip
            except TemporaryFailure as exc:
                log.warning("twilio_outbox_sweep_skipped", reason=str(exc))
            await asyncio.sleep(OUTBOX_SWEEP_S)

    # -- POST /twilio/status ---------------------------------------------------

    async def status(self, request: web.Request) -> web.Response:
        url = self.signature.public_status_url(request.rel_url.raw_query_string)
        form = await self._signed_form(request, url, "status")
        if form is None:
            return _error(403, "missing or invalid X-Twilio-Signature")
        try:
            sid, status, error = status_from_form(form)
            reply_text = request.query.get(REPLY_PARAMETER)
            if reply_text is not None and not (reply_text.isdigit() and len(reply_text) < 19):
                raise BadTwilioRequest(f"{REPLY_PARAMETER} must be a reply id")
        except BadTwilioRequest as exc:
            self.metrics.webhooks.labels("status", "bad_request").inc()
            return _error(400, str(exc))
        reply_id = int(reply_text) if reply_text is not None else None
        try:
            recorded = await record_twilio_status(self.gateway.store, reply_id, sid, status, error)
        except TemporaryFailure as exc:
            self.metrics.webhooks.labels("status", "unavailable").inc()
            log.warning("twilio_status_deferred", reason=str(exc))
            return _unavailable("temporarily unavailable, retry")
        self.metrics.webhooks.labels("status", "ok").inc()
        self.metrics.delivery_statuses.labels(status).inc()
        if status in FAILED_STATUSES:
            log.warning(
                "twilio_reply_undelivered", reply_id=reply_id, sid=sid, status=status, error=error
            )
        if not recorded:
            # Not an error for Twilio (it would only retry): a reply we do not know.
            log.info("twilio_status_unmatched", reply_id=reply_id, sid=sid, status=status)
        return web.json_response({"recorded": recorded, "status": status})
