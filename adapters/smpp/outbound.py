"""Replies out as submit_sm: the quick path, the outbox path, and what their answers mean.

offer(replies)  -> one part, its link can take it now: submit_sm at once (or at its
                   turn under max_send_rate), no task of its own (_send_quickly);
                   otherwise, or on any answer but ESME_ROK: _send as below
outbox          -> claim("smpp", groups this instance carries) -> _send
_send           -> one link for all the parts (LinkSet.route) -> submit_sm each,
                   in that link's window and pace
                -> submit_sm_resp: mark_sent(message_id) | throttled: that link
                   backs off, the part again | other error: mark_failed
                   | no answer / link lost: release (sent again later)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, cast

import structlog
from smpplib import consts

from adapters.smpp.codec import MessageTooLong, encode_reply
from adapters.smpp.link import SmppLink, SubmitResult
from adapters.smpp.links import Link, LinkSet
from sms_gateway.metrics import GatewayMetrics
from sms_gateway.phones import mask_phone
from sms_gateway.ports import OutboundSms, Outbox

log = structlog.get_logger("adapters.smpp")

CHANNEL = "smpp"
OUTBOX_POLL_S = 1.0
MAX_SEND_ATTEMPTS = 5
NO_RESPONSE = "no submit_sm_resp in time"

_SubmitFuture = asyncio.Future[tuple[int | None, str | None]]


class LinkLost(Exception):
    """The submit_sm may or may not have reached the SMSC; the reply goes back to the outbox."""


class SubmitTimeout(Exception):
    """No submit_sm_resp within response_timeout_s."""


class SubmitRejected(Exception):
    def __init__(self, status: int) -> None:
        description = consts.DESCRIPTIONS.get(status, "unknown status")
        super().__init__(f"submit_sm_resp 0x{status:08x} {description}")
        self.status = status


@dataclass(slots=True)
class _Quick:
    """A reply sent by the quick path, waiting for its submit_sm_resp."""

    outbound: OutboundSms
    link: Link
    session: SmppLink
    started: float
    mark: int  # the session's AckLedger mark when the submit_sm was queued


@dataclass(slots=True)
class _Pending:
    """A part sent by `_send`, waiting for its submit_sm_resp."""

    future: _SubmitFuture
    link: Link
    session: SmppLink
    mark: int


class Outbound:
    """Sends replies over the links of a LinkSet, from the pipeline and from the outbox."""

    def __init__(
        self,
        short_number: str,
        outbox: Outbox,
        links: LinkSet,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.short_number = short_number
        self.outbox = outbox
        self.links = links
        self.metrics = metrics
        self._replies_sent = metrics.replies.labels(CHANNEL, "sent") if metrics else None
        self.stopping = False
        self.closing = False
        self.tasks: set[asyncio.Future[Any]] = set()
        self._sending_ids: set[int] = set()
        self._event = asyncio.Event()
        self.idle = False
        self._loop_full = False
        self._tokens = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        # Replies sent by the quick path, by token, until their submit_sm_resp comes.
        self._quick: dict[int, _Quick] = {}
        # Replies confirmed sent, not yet marked in the outbox: one commit for them all.
        self._sent_marks: list[tuple[_Quick, str | None]] = []
        self._marks_task: asyncio.Task[None] | None = None

    # -- what the adapter asks ---------------------------------------------------------

    def wake(self) -> None:
        """Look at the outbox now (on the loop's thread)."""
        self._event.set()

    def accepts_direct(self, link_group: str | None) -> bool:
        """A reply of this group may be handed over now. Called from the database
        writer thread: it only reads plain attributes."""
        return not self.stopping and self.links.carries(link_group)

    def sending_ids(self) -> frozenset[int]:
        """Replies held right now: never stale, however long they take."""
        return frozenset(self._sending_ids)

    def busy(self) -> bool:
        return bool(self.tasks or self._quick)

    def offer(self, replies: list[OutboundSms]) -> None:
        """Send replies that were stored already claimed by this instance ("sending"),
        saving the outbox round trip. A reply that cannot go out now is released to the
        outbox by _send; one offered after the stop began goes back there too."""
        for outbound in replies:
            if self.closing or self.stopping:
                self._spawn(self._release(outbound, "offered while stopping"))
            elif not self._send_quickly(outbound):
                self._spawn(self._send(outbound))

    def on_result(self, event: SubmitResult) -> None:
        """A submit_sm's outcome from its link."""
        quick = self._quick.pop(event.token, None)
        if quick is not None:
            if event.status is not None:
                quick.link.ledgers[quick.session].confirm(quick.mark)
            self._quick_result(quick, event.status, event.message_id)
            return
        pending = self._pending.pop(event.token, None)
        if pending is not None:
            if event.status is not None:
                pending.link.ledgers[pending.session].confirm(pending.mark)
            if not pending.future.done():
                pending.future.set_result((event.status, event.message_id))

    def session_lost(self, session: SmppLink, reason: str) -> None:
        """Everything in flight on that session: lost with it (sent again later)."""
        for token, pending in list(self._pending.items()):
            if pending.session is session:
                del self._pending[token]
                if not pending.future.done():
                    pending.future.set_exception(LinkLost(reason))
        for token, quick in list(self._quick.items()):
            if quick.session is session:
                del self._quick[token]
                quick.link.given()
                self._sending_ids.discard(quick.outbound.id)
                self._spawn(self._unanswered(quick.outbound, reason))

    def give_back_unconfirmed(self) -> None:
        """At the stop: quick sends still without their response go back to the
        outbox, as a cancelled _send's reply does."""
        unconfirmed, self._quick = list(self._quick.values()), {}
        for quick in unconfirmed:
            quick.link.given()
            self._sending_ids.discard(quick.outbound.id)
            self._spawn(self._release(quick.outbound, "shutdown before the reply was confirmed"))

    # -- the quick path ----------------------------------------------------------------

    def _send_quickly(self, outbound: OutboundSms) -> bool:
        """The usual case without a task of its own: one part, its link bound with a
        free window slot, not throttled; sent now or, under max_send_rate, by a timer
        at its turn. Its submit_sm_resp comes back to `_quick_result`; anything but
        ESME_ROK hands the reply on to `_send`, which retries as it would have. (A task
        per reply, awaiting its response and its "sent" commit, was a third of the
        event loop's time per MO.) False: not this way, use `_send`."""
        link = self.links.route(outbound.link_group, outbound.link)
        if link is None or not link.can_send_now():
            return False
        session = link.transmitter()
        assert session is not None  # can_send_now
        try:
            encoded = encode_reply(outbound.text, next(link.reference))
        except MessageTooLong:
            return False  # _send records the failure
        if len(encoded.bodies) != 1 or not link.window.try_take():
            return False
        link.taken()
        token = next(self._tokens)
        mark = link.ledgers[session].mark()
        self._quick[token] = _Quick(outbound, link, session, time.monotonic(), mark)
        self._sending_ids.add(outbound.id)
        params = self._submit_params(
            link, outbound, encoded.esm_class, encoded.data_coding, encoded.bodies[0]
        )
        delay = link.pacer.reserve() - time.monotonic()
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self._submit_quick, token, params)
        else:
            session.submit(token, params)
        return True

    def _submit_quick(self, token: int, params: dict[str, Any]) -> None:
        """A quick send whose turn under max_send_rate has come, if it is still due
        (a dropped link or the stop took it back meanwhile)."""
        quick = self._quick.get(token)
        if quick is not None:
            quick.session.submit(token, params)

    def _quick_result(self, quick: _Quick, status: int | None, message_id: str | None) -> None:
        quick.link.given()
        verdict = quick.link.judge(status)
        if verdict == "sent":
            if quick.link.sent_metric is not None:
                quick.link.sent_metric.inc()
            self._sent_marks.append((quick, message_id))
            if self._marks_task is None or self._marks_task.done():
                self._marks_task = asyncio.create_task(self._mark_sent())
                self.tasks.add(self._marks_task)
                self._marks_task.add_done_callback(self.tasks.discard)
            return
        # The rest as _send takes it: sent again after the pause, released or given up,
        # or failed.
        outbound = quick.outbound
        self._sending_ids.discard(outbound.id)
        if verdict == "again":
            self._spawn(self._send(outbound))
        elif verdict == "unanswered":
            self._spawn(self._unanswered(outbound, NO_RESPONSE))
        else:
            self._spawn(self._failed(outbound, str(SubmitRejected(cast(int, status))), quick.link))

    async def _mark_sent(self) -> None:
        """Record every reply confirmed meanwhile as sent, in one shared commit."""
        while self._sent_marks:
            marks, self._sent_marks = self._sent_marks, []
            try:
                await self.outbox.mark_sent_many(
                    [(q.outbound.id, message_id) for q, message_id in marks]
                )
            except Exception as exc:
                # Still "sending" in the outbox: sent again once the claim is released.
                log.warning("smpp.sent_marks_failed", count=len(marks), error=str(exc))
            finally:
                for quick, _ in marks:
                    self._sending_ids.discard(quick.outbound.id)
            if self._replies_sent is not None:
                self._replies_sent.inc(len(marks))
            if log.is_enabled_for(logging.DEBUG):
                now = time.monotonic()
                for quick, message_id in marks:
                    log.debug(
                        "smpp.reply_sent",
                        outbound_id=quick.outbound.id,
                        link=quick.link.name,
                        parts=1,
                        message_id=message_id,
                        phone=mask_phone(quick.outbound.phone),
                        latency_ms=round((now - quick.started) * 1000, 1),
                    )
        if self._loop_full or not self.idle:
            self._event.set()

    # -- the outbox path ---------------------------------------------------------------

    async def send_loop(self) -> None:
        """Claim what the outbox holds for the groups this instance can carry now."""
        while not self.closing:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the
            # cancellation stop() sends when the event fires at the same moment.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(OUTBOX_POLL_S):
                    await self._event.wait()
            self._event.clear()
            while True:
                groups = self.links.carried_groups()
                if not groups:
                    break
                room = sum(link.settings.window * 2 for link in self.links.links if link.bound)
                free = max(2, room) - len(self.tasks)
                self._loop_full = free <= 0
                if free <= 0:
                    break  # a finishing send sets the event again
                try:
                    batch = await self.outbox.claim(CHANNEL, free, groups)
                except Exception as exc:
                    log.warning("smpp.outbox_unavailable", error=str(exc))
                    break
                if not batch:
                    self.idle = True
                    break
                self.idle = False
                for outbound in batch:
                    self._spawn(self._send(outbound))

    async def _send(self, outbound: OutboundSms) -> None:
        started = time.monotonic()
        self._sending_ids.add(outbound.id)
        link: Link | None = None
        try:
            # All parts of a reply through one link: the handset joins them by its
            # reference, which is that link's.
            link = self.links.route(outbound.link_group, outbound.link)
            if link is None:
                raise LinkLost(f"no bound link for group {outbound.link_group or 'any'}")
            try:
                encoded = encode_reply(outbound.text, next(link.reference))
            except MessageTooLong as exc:
                await self._failed(outbound, str(exc), link)
                return
            message_ids: list[str | None] = []
            for body in encoded.bodies:
                params = self._submit_params(
                    link, outbound, encoded.esm_class, encoded.data_coding, body
                )
                message_ids.append(await self._submit(link, params))
            await self.outbox.mark_sent(outbound.id, message_ids[0])
            if link.sent_metric is not None:
                link.sent_metric.inc()
            if self._replies_sent is not None:
                self._replies_sent.inc()
            if log.is_enabled_for(logging.DEBUG):
                log.debug(
                    "smpp.reply_sent",
                    outbound_id=outbound.id,
                    link=link.name,
                    parts=len(encoded.bodies),
                    message_id=message_ids[0],
                    phone=mask_phone(outbound.phone),
                    latency_ms=round((time.monotonic() - started) * 1000, 1),
                )
        except SubmitRejected as exc:
            await self._failed(outbound, str(exc), link)
        except (LinkLost, SubmitTimeout) as exc:
            await self._unanswered(outbound, str(exc) or type(exc).__name__)
        except asyncio.CancelledError:
            await self._release(outbound, "shutdown before the reply was confirmed")
            raise
        finally:
            self._sending_ids.discard(outbound.id)
            # Look at the outbox again only when it may hold something for us: the
            # loop stopped claiming for want of room, or it was not empty last time.
            # (Replies stored as pending wake it through notify_outbox.)
            if self._loop_full or not self.idle:
                self._event.set()

    async def _submit(self, link: Link, params: dict[str, Any]) -> str | None:
        """One submit_sm on `link`, retried while its SMSC throttles; its message_id."""
        loop = asyncio.get_running_loop()
        while True:
            delay = link.throttled_until - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await link.pacer.acquire()
            await link.window.take()
            link.taken()
            try:
                session = link.transmitter()
                if session is None:
                    raise LinkLost(f"link {link.name} not bound")
                token = next(self._tokens)
                future: _SubmitFuture = loop.create_future()
                self._pending[token] = _Pending(future, link, session, link.ledgers[session].mark())
                session.submit(token, params)
                try:
                    status, message_id = await future
                finally:
                    self._pending.pop(token, None)
            finally:
                link.given()
            verdict = link.judge(status)
            if verdict == "sent":
                return message_id
            if verdict == "again":
                continue
            if verdict == "unanswered":
                raise SubmitTimeout(NO_RESPONSE)
            raise SubmitRejected(cast(int, status))

    def _submit_params(
        self, link: Link, outbound: OutboundSms, esm_class: int, data_coding: int, body: bytes
    ) -> dict[str, Any]:
        """The submit_sm fields of one part of a reply."""
        return {
            "source_addr_ton": link.settings.source_addr_ton,
            "source_addr_npi": link.settings.source_addr_npi,
            "source_addr": outbound.short_number or self.short_number,
            "dest_addr_ton": 1 if outbound.phone.startswith("+") else 0,
            "dest_addr_npi": 1,
            "destination_addr": outbound.phone.lstrip("+"),
            "esm_class": esm_class,
            "data_coding": data_coding,
            "registered_delivery": 1,
            "short_message": body,
        }

    # -- endings -----------------------------------------------------------------------

    async def _unanswered(self, outbound: OutboundSms, error: str) -> None:
        """A reply whose submit_sm may or may not have arrived: retried, up to a point."""
        if outbound.attempts >= MAX_SEND_ATTEMPTS:
            await self._failed(outbound, f"gave up after {outbound.attempts} attempts: {error}")
        else:
            await self._release(outbound, error)

    async def _failed(self, outbound: OutboundSms, error: str, link: Link | None = None) -> None:
        log.warning(
            "smpp.reply_failed",
            outbound_id=outbound.id,
            link=link.name if link else None,
            error=error,
            phone=mask_phone(outbound.phone),
        )
        if self.metrics is not None:
            self.metrics.replies.labels(channel=CHANNEL, result="failed").inc()
        if link is not None and link.failed_metric is not None:
            link.failed_metric.inc()
        with contextlib.suppress(Exception):
            await self.outbox.mark_failed(outbound.id, error)

    async def _release(self, outbound: OutboundSms, error: str) -> None:
        log.info("smpp.reply_deferred", outbound_id=outbound.id, error=error)
        try:
            await self.outbox.release(outbound.id, error)
        except Exception:
            log.exception("smpp.outbox_release_failed", outbound_id=outbound.id)
        self.idle = False  # pending again: the send loop takes it from there

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
