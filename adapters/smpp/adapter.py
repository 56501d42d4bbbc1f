"""The SMPP transport: every configured link of this instance, top-down.

    SmppAdapter      start/stop, the events of every link, housekeeping
    ├─ LinkSet       the links ([[smpp.links]], or the one of a plain [smpp]) and
    │  └─ Link       which carries a reply (adapters/smpp/links.py); per link: its
    │     └─ SmppLink    sessions (one per bind, adapters/smpp/link.py), window,
    │                    pace, throttling, acknowledgement ledgers
    ├─ Inbound       MO in, long MO joined, receipts, acknowledgements in doubt
    │                (adapters/smpp/inbound.py)
    └─ Outbound      replies out, quick path and outbox path (adapters/smpp/outbound.py)

Everything runs on the event loop; only smpplib's blocking connect and bind run in a
thread of their own (adapters/smpp/link.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any

import structlog

from adapters.smpp.inbound import Inbound
from adapters.smpp.link import (
    BindFailed,
    Bound,
    Connecting,
    Delivered,
    EnquireAnswered,
    LinkDown,
    LinkEvent,
    SmppLink,
    SubmitResult,
)
from adapters.smpp.links import Link, LinkSet
from adapters.smpp.outbound import OUTBOX_POLL_S, Outbound
from adapters.smpp.reassembly import MemoryPartStore, PartStore
from sms_gateway.config import SmppSettings
from sms_gateway.metrics import GatewayMetrics
from sms_gateway.ports import InboundPipeline, OutboundSms, Outbox

log = structlog.get_logger("adapters.smpp")

HOUSEKEEPING_S = 0.1


class SmppAdapter:
    """The ESME: binds to the operators' SMSCs and moves MO and replies for one short
    number."""

    def __init__(
        self,
        settings: SmppSettings,
        short_number: str,
        pipeline: InboundPipeline,
        outbox: Outbox,
        metrics: GatewayMetrics | None = None,
        *,
        part_store: PartStore | None = None,
    ) -> None:
        self.settings = settings
        self.short_number = short_number
        self.metrics = metrics
        self.link_settings = [link for link in settings.effective_links() if link.enabled]
        self.inbound = Inbound(
            short_number,
            pipeline,
            outbox,
            part_store or MemoryPartStore(),
            settings.reassembly_timeout_s,
            metrics,
        )
        self.links = LinkSet(settings, [])
        self.outbound = Outbound(short_number, outbox, self.links, metrics)
        self._started = False
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._background: list[asyncio.Task[Any]] = []

    # ---- lifecycle -------------------------------------------------------------------

    @property
    def state(self) -> str:
        """disabled | stopped | connecting | bound | stopping | unbound: "bound" while
        every group has a bound link."""
        if not self.settings.enabled or not self.link_settings:
            return "disabled"
        if not self._started:
            return "unbound" if self._stopping else "stopped"
        if self._stopping:
            return "stopping"
        return "bound" if self.links.all_groups_bound() else "connecting"

    async def start(self) -> None:
        """Start binding every link (in the background: a dead SMSC blocks nothing)."""
        if self.state == "disabled":
            return
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._stopping = False
        self.inbound.stopping = self.outbound.stopping = self.outbound.closing = False
        await self.inbound.load_parts()
        self.links = LinkSet(
            self.settings,
            [Link(one, loop, self._on_link_events, self.metrics) for one in self.link_settings],
        )
        self.outbound.links = self.links
        self._started = True
        for link in self.links.links:
            for session in link.sessions:
                session.start()
        self._background = [
            asyncio.create_task(self.outbound.send_loop(), name="smpp-sender"),
            asyncio.create_task(self._housekeeping(), name="smpp-housekeeping"),
        ]

    async def stop(self, deadline_s: float) -> None:
        """Graceful stop: refuse new MO, finish what is in hand, flush the outbox, unbind."""
        if not self._started:
            return
        deadline = time.monotonic() + deadline_s
        self._stopping = True
        self.inbound.stopping = self.outbound.stopping = True
        for link in self.links.links:
            link.stopping = True
        log.info("smpp.stopping", deadline_s=deadline_s, in_hand=len(self.inbound.tasks))
        if self.inbound.tasks:
            await asyncio.wait(set(self.inbound.tasks), timeout=_remaining(deadline))
        self.outbound.idle = False
        self.outbound.wake()
        while _remaining(deadline) > 0 and self.links.any_bound():
            if self.outbound.idle and not self.outbound.busy():
                break
            await asyncio.sleep(0.02)
        self.outbound.closing = True
        for task in self._background:
            task.cancel()
        for pending in list(self.outbound.tasks) + list(self.inbound.tasks):
            pending.cancel()
        self.outbound.give_back_unconfirmed()
        leftovers = {*self._background, *self.outbound.tasks, *self.inbound.tasks}
        if leftovers:
            # Bounded: a task that ignores its cancellation must not keep the link bound.
            await asyncio.wait(leftovers, timeout=2.0)
        sessions = [session for link in self.links.links for session in link.sessions]
        unbind_timeout = max(
            _remaining(deadline),
            min(min(s.settings.response_timeout_s for s in sessions), 2.0),
        )
        await asyncio.gather(*(session.stop(unbind_timeout) for session in sessions))
        # Their LinkDown events came first: what the SMSC may not have heard
        # acknowledged is recorded before this instance says it stopped.
        await self.inbound.settle_doubt()
        self._started = False
        log.info("smpp.stopped")

    # ---- the inbound batch lingering (sms_gateway.batching.ReadPauser) --------------

    def pause_reading(self) -> None:
        """Every session stops reading until resume_reading."""
        if not self._started:
            return
        for link in self.links.links:
            for session in link.sessions:
                session.pause_reading()

    def resume_reading(self) -> None:
        for link in self.links.links:
            for session in link.sessions:
                session.resume_reading()

    def notify_outbox(self) -> None:
        """A reply was queued: send now rather than at the next poll. Any thread may call."""
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            self.outbound.wake()
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.outbound.wake)

    def accepts_direct(self, link_group: str | None = None) -> bool:
        """True while a reply of this group may be handed straight over. Called from
        the database writer thread: it only reads plain attributes."""
        return self._started and self.outbound.accepts_direct(link_group)

    def offer(self, replies: list[OutboundSms]) -> None:
        self.outbound.offer(replies)

    def sending_ids(self) -> frozenset[int]:
        return self.outbound.sending_ids()

    def confirmed_mo_id(self) -> int | None:
        return self.inbound.confirmed_mo_id(self.links.links)

    def enquire_link(self) -> None:
        """Probe every session with an enquire_link now."""
        for link in self.links.links:
            for session in link.sessions:
                session.enquire_link()

    def links_status(self) -> list[dict[str, Any]]:
        """Each link's state for /health and the dashboard."""
        if not self._started:
            return [
                {"name": s.name, "group": s.group, "state": self.state} for s in self.link_settings
            ]
        return [link.status() for link in self.links.links]

    # ---- events from the links ------------------------------------------------------

    def _on_link_events(self, link: Link, session: SmppLink, events: list[LinkEvent]) -> None:
        for event in events:
            if isinstance(event, Delivered):
                self.inbound.on_deliver(link, session, event)
            elif isinstance(event, SubmitResult):
                self.outbound.on_result(event)
            elif isinstance(event, EnquireAnswered):
                self.inbound.on_enquire_answered(session, event.tag)
            elif isinstance(event, Bound):
                link.set_session_state(session, "bound")
                self.inbound.session_bound(link, session, event.session)
                if self.metrics is not None:
                    self.metrics.smpp_binds.labels(link.name, session.mode).inc()
                log.info(
                    "smpp.bound",
                    link=link.name,
                    mode=session.mode,
                    host=link.settings.host,
                    port=link.settings.port,
                    system_id=link.settings.system_id,
                    tls=link.settings.tls,
                )
                self.outbound.wake()
            elif isinstance(event, LinkDown):
                link.set_session_state(session, "unbound" if self._stopping else "connecting")
                self.outbound.session_lost(session, event.reason)
                self.inbound.session_lost(link, session, event.drained)
                if event.clean:
                    log.info("smpp.unbound", link=link.name, mode=session.mode, reason=event.reason)
                else:
                    link.last_error = event.reason
                    log.warning(
                        "smpp.link_down",
                        link=link.name,
                        mode=session.mode,
                        reason=event.reason,
                        in_flight=len(event.tokens),
                    )
            elif isinstance(event, Connecting):
                if event.attempt > 1 and self.metrics is not None:
                    self.metrics.smpp_reconnects.labels(link.name).inc()
                log.info(
                    "smpp.connecting",
                    link=link.name,
                    mode=session.mode,
                    attempt=event.attempt,
                    host=link.settings.host,
                    port=link.settings.port,
                )
            elif isinstance(event, BindFailed):
                link.set_session_state(session, "connecting")
                link.last_error = event.error
                log.warning(
                    "smpp.bind_failed",
                    link=link.name,
                    mode=session.mode,
                    attempt=event.attempt,
                    error=event.error,
                    retry_in_s=event.retry_in_s,
                )

    # ---- housekeeping ----------------------------------------------------------------

    async def _housekeeping(self) -> None:
        next_poll = time.monotonic() + OUTBOX_POLL_S
        while not self.outbound.closing:
            await asyncio.sleep(HOUSEKEEPING_S)
            now = time.monotonic()
            if now >= next_poll:
                next_poll = now + OUTBOX_POLL_S
                self.outbound.wake()  # replies left from before a restart
            await self.inbound.housekeeping(self.links.links, now)


def _remaining(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())
