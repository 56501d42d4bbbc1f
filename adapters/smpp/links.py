"""The configured links and the routing of replies over them.

A `Link` is one `[[smpp.links]]` entry at run time: its bind sessions (one
transceiver, or a receiver and a transmitter, each an `SmppLink`), and what is
its own: window, pace, throttling back-off, acknowledgement ledgers, state for
/health. A `LinkSet` holds every link of this instance and decides which link
carries a reply:

1. the link its MO came in on, when that link can take a submit_sm now;
2. otherwise the bound link of the MO's group with the fewest submit_sm in flight
   (several binds to one operator or aggregator);
3. otherwise a bound link of a group in `[smpp.groups.G] fallback_groups`;
4. otherwise none: the reply waits in the outbox (until `reply_expiry_s`).

A reply of no group (stored before links had groups, or sent by ops) goes to any
bound link, the fewest in flight first.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

import structlog
from smpplib import consts

from adapters.smpp.acks import AckLedger
from adapters.smpp.link import LinkEvent, SmppLink
from adapters.smpp.pacing import Pacer, Window
from sms_gateway.config import SmppLinkSettings, SmppSettings
from sms_gateway.metrics import GatewayMetrics

log = structlog.get_logger("adapters.smpp")

ESME_ROK = consts.SMPP_ESME_ROK
ESME_RTHROTTLED = consts.SMPP_ESME_RTHROTTLED
ESME_RMSGQFUL = consts.SMPP_ESME_RMSGQFUL
THROTTLE_MIN_S = 0.05
THROTTLE_MAX_S = 5.0


class Link:
    """One configured link: its sessions and everything that is per link."""

    def __init__(
        self,
        settings: SmppLinkSettings,
        loop: asyncio.AbstractEventLoop,
        on_events: Callable[[Link, SmppLink, list[LinkEvent]], None],
        metrics: GatewayMetrics | None,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self.group = settings.group
        modes = ["transceiver"] if settings.bind == "transceiver" else ["receiver", "transmitter"]
        self.sessions = [
            SmppLink(settings, mode, loop, lambda s, events: on_events(self, s, events))
            for mode in modes
        ]
        self.session_state: dict[SmppLink, str] = dict.fromkeys(self.sessions, "connecting")
        self.ledgers: dict[SmppLink, AckLedger] = {s: AckLedger() for s in self.sessions}
        self.window = Window(max(1, settings.window))
        self.pacer = Pacer(settings.max_send_rate)
        self.throttled_until = 0.0
        self.throttle_delay = THROTTLE_MIN_S
        self.in_flight = 0
        self.reference = itertools.count(int(time.time()) & 0xFF)  # UDH references
        self.bound_since: float | None = None  # wall clock, for /health
        self.last_error: str | None = None
        self.stopping = False
        # Resolved once: labels() costs more than the increment, on every reply.
        self.metrics = metrics
        self.sent_metric: Any = metrics.smpp_submits.labels(self.name, "sent") if metrics else None
        self.failed_metric: Any = (
            metrics.smpp_submits.labels(self.name, "failed") if metrics else None
        )
        self.mo_metric: Any = metrics.smpp_mo.labels(self.name) if metrics else None
        if metrics is not None:
            # Read when scraped: setting a gauge twice per reply cost more than it told.
            metrics.smpp_window.labels(self.name).set_function(lambda: self.in_flight)
        # Kept by set_session_state: read for every reply.
        self.bound = False
        self._transmitter: SmppLink | None = None

    # -- state -------------------------------------------------------------------------

    @property
    def state(self) -> str:
        if self.bound:
            return "bound"
        if self.stopping:
            return "unbound"
        return "connecting"

    def set_session_state(self, session: SmppLink, state: str) -> None:
        was_bound = self.bound
        self.session_state[session] = state
        self.bound = all(one == "bound" for one in self.session_state.values())
        self._transmitter = (
            next((s for s in self.sessions if s.transmits), None) if self.bound else None
        )
        if self.bound and not was_bound:
            self.bound_since = time.time()
            self.last_error = None
        elif not self.bound:
            self.bound_since = None
        if self.metrics is not None:
            self.metrics.smpp_bound.labels(self.name).set(1 if self.bound else 0)

    def transmitter(self) -> SmppLink | None:
        """The session that carries submit_sm, if this link is bound."""
        return self._transmitter

    def can_send_now(self) -> bool:
        """Bound, not throttled and a window slot free: a reply may go out at once."""
        return (
            self.transmitter() is not None
            and self.throttled_until <= time.monotonic()
            and self.window.free > 0
        )

    def status(self) -> dict[str, Any]:
        """What /health and the dashboard show of this link."""
        return {
            "name": self.name,
            "group": self.group,
            "state": self.state,
            "bound_since": (
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.bound_since))
                if self.bound_since
                else None
            ),
            "in_flight": self.in_flight,
            "window": self.settings.window,
            "last_error": self.last_error,
        }

    # -- sending -----------------------------------------------------------------------

    def taken(self) -> None:
        """A submit_sm is in flight on this link."""
        self.in_flight += 1

    def given(self) -> None:
        self.in_flight -= 1
        self.window.give()

    def judge(self, status: int | None) -> str:
        """What a submit_sm's outcome means for its reply: "sent", "again" (throttled:
        the same part once the pause is over), "unanswered" (no response in time) or
        "rejected"; and for this link: a throttle or a silence pauses its sending
        (only this link's: one operator's throttling slows no other)."""
        if status == ESME_ROK:
            self.throttle_delay = THROTTLE_MIN_S
            return "sent"
        if status is None:
            self.throttle()
            return "unanswered"
        if status in (ESME_RTHROTTLED, ESME_RMSGQFUL):
            if self.metrics is not None:
                self.metrics.smpp_throttles.labels(self.name).inc()
            self.throttle()
            return "again"
        return "rejected"

    def throttle(self) -> None:
        """Pause this link's sending; each throttle in a row doubles the pause."""
        now = time.monotonic()
        if self.throttled_until <= now:
            self.throttled_until = now + self.throttle_delay
            log.info("smpp.throttled", link=self.name, pause_s=self.throttle_delay)
            self.throttle_delay = min(self.throttle_delay * 2, THROTTLE_MAX_S)


class LinkSet:
    """Every link of this instance, and which of them carries a reply."""

    def __init__(self, settings: SmppSettings, links: list[Link]) -> None:
        self.settings = settings
        self.links = links
        self.by_name = {link.name: link for link in links}
        self._groups: dict[str, list[Link]] = {}
        for link in links:
            self._groups.setdefault(link.group, []).append(link)
        self._fallbacks = {group: settings.group(group).fallback_groups for group in self._groups}

    def route(self, group: str | None, preferred: str | None = None) -> Link | None:
        """The link for a reply of `group` whose MO came on `preferred` (see the module
        docstring); None when no link of the group, or of its fallbacks, is bound."""
        link = self.by_name.get(preferred) if preferred else None
        if link is not None and link.group == group and link.can_send_now():
            return link
        if group is None:
            return _least_loaded(self.links)
        if group not in self._groups:
            return None  # another operator's: never through ours
        chosen = _least_loaded(self._groups[group])
        if chosen is not None:
            return chosen
        for other in self._fallbacks.get(group, ()):
            chosen = _least_loaded(self._groups.get(other, []))
            if chosen is not None:
                return chosen
        return None

    def carries(self, group: str | None) -> bool:
        """Some bound link here may carry a reply of this group."""
        if group is None:
            return any(link.bound for link in self.links)
        if group not in self._groups:
            return False
        if any(link.bound for link in self._groups[group]):
            return True
        return any(
            link.bound
            for other in self._fallbacks.get(group, ())
            for link in self._groups.get(other, [])
        )

    def carried_groups(self) -> list[str]:
        """The groups whose replies this instance can send now (for the outbox claim)."""
        return [group for group in self._groups if self.carries(group)]

    def any_bound(self) -> bool:
        return any(link.bound for link in self.links)

    def all_groups_bound(self) -> bool:
        return all(any(link.bound for link in links) for links in self._groups.values())


def _least_loaded(links: list[Link]) -> Link | None:
    bound = [link for link in links if link.transmitter() is not None]
    if not bound:
        return None
    now = time.monotonic()
    # Not throttled first, then the fewest in flight.
    return min(bound, key=lambda link: (link.throttled_until > now, link.in_flight))
