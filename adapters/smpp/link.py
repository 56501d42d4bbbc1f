"""One SMPP bind owned by one thread: connect, bind, read, write, keep alive, reconnect.

smpplib's Client is blocking and not thread-safe, so each `SmppLink` runs its Client
in its own thread and nothing else touches it. The asyncio side talks to the thread
through a command queue plus a socketpair that wakes its `select`, and hears back
through `loop.call_soon_threadsafe` with batches of events (one call per chunk read
from the socket, not one per PDU, so a burst does not flood the loop's self-pipe).

smpplib is used for connect/bind and for the session's PDUs; the four PDUs every MO
costs (deliver_sm, deliver_sm_resp, submit_sm, submit_sm_resp) are read and written by
`adapters.smpp.pdus`, and what the asyncio side queued meanwhile goes out in one write.
The read loop is our own: `Client.listen()` blocks in `recv` and cannot also wait for
the command queue, and its `_message_received` answers deliver_sm synchronously, while
we must answer only once the asyncio side has stored the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from smpplib import client as smpplib_client
from smpplib import consts, exceptions, smpp

from adapters.smpp.pdus import (
    DATA_SM,
    DELIVER_SM,
    RESPONSE_BIT,
    SUBMIT_SM_RESP,
    DeliverSm,
    PduParseError,
    encode_deliver_sm_resp,
    encode_submit_sm,
    frame_length,
    parse_mo,
    parse_other,
    parse_submit_sm_resp,
)
from sms_gateway.config import SmppLinkSettings

log = structlog.get_logger("adapters.smpp.link")

ESME_ROK = consts.SMPP_ESME_ROK
ESME_RINVCMDID = consts.SMPP_ESME_RINVCMDID
ESME_RX_P_APPN = consts.SMPP_ESME_RX_P_APPN
ESME_RSUBMITFAIL = consts.SMPP_ESME_RSUBMITFAIL
MAX_PDU = 65536


# Events the link thread reports, delivered on the event loop in batches.
@dataclass(frozen=True, slots=True)
class Bound:
    session: int


@dataclass(frozen=True, slots=True)
class Connecting:
    attempt: int


@dataclass(frozen=True, slots=True)
class BindFailed:
    attempt: int
    error: str
    retry_in_s: float


@dataclass(frozen=True, slots=True)
class Delivered:
    session: int
    deliver: DeliverSm
    received_at: float  # time.monotonic()


@dataclass(frozen=True, slots=True)
class SubmitResult:
    token: int
    status: int | None  # None: no submit_sm_resp within the response timeout
    message_id: str | None


@dataclass(frozen=True, slots=True)
class EnquireAnswered:
    """The answer to `SmppLink.enquire_link(tag)`: the SMSC has read everything
    written on this session before that enquire_link."""

    session: int
    tag: int


@dataclass(frozen=True, slots=True)
class LinkDown:
    session: int
    reason: str
    tokens: tuple[int, ...]  # submit_sm sent on this session and never answered
    clean: bool  # True after our own unbind on shutdown
    # True when the SMSC answered our unbind: it read everything we wrote, every
    # deliver_sm_resp included.
    drained: bool = False


LinkEvent = Bound | Connecting | BindFailed | Delivered | SubmitResult | EnquireAnswered | LinkDown


class _Stop(Exception):
    """Raised inside the thread to leave the session loop."""

    def __init__(self, reason: str, clean: bool = False, drained: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.clean = clean
        self.drained = drained


class SmppLink:
    """A bind (transceiver, receiver or transmitter) and the thread that owns it."""

    def __init__(
        self,
        settings: SmppLinkSettings,
        mode: str,
        loop: asyncio.AbstractEventLoop,
        on_events: Callable[[SmppLink, list[LinkEvent]], None],
    ) -> None:
        self.settings = settings
        self.mode = mode  # "transceiver" | "receiver" | "transmitter"
        self.loop = loop
        self._on_events = on_events
        self._commands: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._wake_pending = False
        self._wake_scheduled = False
        self._loop_thread = threading.get_ident()  # built on the loop's thread
        self._stop = threading.Event()
        self.label = f"{settings.name}/{mode}"  # in logs
        self._thread = threading.Thread(target=self._run, name=f"smpp-{self.label}", daemon=True)
        self._finished: asyncio.Future[None] = loop.create_future()
        self._client: smpplib_client.Client | None = None
        self._session = 0
        self._outstanding: dict[int, tuple[int, float]] = {}  # sequence -> (token, deadline)
        self._probes: dict[int, int] = {}  # enquire_link sequence -> the caller's tag
        self._events: list[LinkEvent] = []
        # Hot-path PDUs encoded and not yet written: one sendall per turn of the loop.
        self._out = bytearray()

    @property
    def receives(self) -> bool:
        return self.mode in ("transceiver", "receiver")

    @property
    def transmits(self) -> bool:
        return self.mode in ("transceiver", "transmitter")

    # ---- called from the event loop --------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def respond(self, delivered: Delivered, status: int) -> None:
        """Queue the answer (deliver_sm_resp or data_sm_resp) to a delivered MO."""
        deliver = delivered.deliver
        self._command(("resp", delivered.session, deliver.sequence, deliver.response_id, status))

    def submit(self, token: int, params: dict[str, Any]) -> None:
        """Queue a submit_sm; its outcome comes back as SubmitResult(token)."""
        self._command(("submit", token, params))

    def enquire_link(self, tag: int | None = None) -> None:
        """Send an enquire_link now (tests and operators use it to probe the link);
        with a tag, its answer comes back as EnquireAnswered(tag)."""
        self._command(("enquire_link", tag))

    async def stop(self, timeout_s: float) -> None:
        """Unbind cleanly (waiting up to timeout_s for unbind_resp) and end the thread."""
        self._stop.set()
        self._command(("unbind",))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._finished), timeout_s + 1.0)
        if not self._finished.done():
            self._command(("close",))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._finished), 2.0)
        if self._finished.done():
            self._wake_w.close()

    def _command(self, command: tuple[Any, ...]) -> None:
        self._commands.put(command)
        if threading.get_ident() != self._loop_thread:
            self._wake()
        elif not self._wake_scheduled:
            # One wake-up for all the commands of this turn of the loop: a wake-up per
            # command cost a system call each and handed the GIL to this link's thread
            # in the middle of the turn, twice per MO.
            self._wake_scheduled = True
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody to wake for
                self.loop.call_soon(self._wake)

    def _wake(self) -> None:
        self._wake_scheduled = False
        if not self._wake_pending:
            # A lost race only costs one spare wake-up byte.
            self._wake_pending = True
            with contextlib.suppress(BlockingIOError, OSError):
                self._wake_w.send(b"\x00")

    # ---- the thread ------------------------------------------------------------------

    def _post(self, *events: LinkEvent) -> None:
        self._events.extend(events)

    def _flush(self) -> None:
        if not self._events:
            return
        events, self._events = self._events, []
        # RuntimeError: the loop is closed, the adapter is gone.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._on_events, self, events)

    def _run(self) -> None:
        settings = self.settings
        delay = settings.reconnect_min_s
        attempt = 0
        try:
            while not self._stop.is_set():
                attempt += 1
                self._post(Connecting(attempt))
                self._flush()
                try:
                    self._connect_and_bind()
                except (exceptions.ConnectionError, exceptions.PDUError, OSError) as exc:
                    self._disconnect()
                    error = _describe(exc)
                    self._post(BindFailed(attempt, error, delay))
                    self._flush()
                    if self._stop.wait(delay):
                        break
                    delay = min(delay * 2, settings.reconnect_max_s)
                    continue
                attempt = 0
                delay = settings.reconnect_min_s
                self._session += 1
                self._post(Bound(self._session))
                self._flush()
                drained = False
                try:
                    self._serve()
                except _Stop as stop:
                    reason, clean, drained = stop.reason, stop.clean, stop.drained
                except (exceptions.ConnectionError, OSError) as exc:
                    reason, clean = f"connection lost: {_describe(exc)}", False
                self._disconnect()
                tokens = tuple(token for token, _ in self._outstanding.values())
                self._outstanding.clear()
                self._probes.clear()
                self._post(LinkDown(self._session, reason, tokens, clean, drained))
                self._flush()
                if clean or self._stop.is_set():
                    break
                # A lost link waits before reconnecting too, so a flapping SMSC is not
                # hammered; the delay grows if the next bind fails as well.
                if self._stop.wait(delay):
                    break
        finally:
            self._disconnect()
            self._wake_r.close()
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(_set_done, self._finished)

    def _connect_and_bind(self) -> None:
        settings = self.settings
        client = smpplib_client.Client(
            settings.host,
            settings.port,
            timeout=settings.response_timeout_s,
            logger_name=f"smpplib.client.{self.mode}",
            allow_unknown_opt_params=True,
        )
        # smpplib logs every PDU as a hex dump at DEBUG: phone numbers and texts.
        # Pinned at INFO whatever the root logger says.
        client.logger.setLevel(logging.INFO)
        self._client = client
        if settings.tls:
            client._socket = self._tls_connect()
            client.state = consts.SMPP_CLIENT_STATE_OPEN
        else:
            client.connect()
        # SMPP is request/response with small PDUs: Nagle's algorithm plus the peer's
        # delayed ACK would hold a deliver_sm_resp or submit_sm back by up to 40 ms.
        client._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        bind = {
            "transceiver": client.bind_transceiver,
            "receiver": client.bind_receiver,
            "transmitter": client.bind_transmitter,
        }[self.mode]
        bind(
            system_id=settings.system_id,
            password=settings.password,
            system_type=settings.system_type,
        )

    def _tls_connect(self) -> ssl.SSLSocket:
        """TCP, then TLS with the server's name checked. smpplib's own wrapping calls
        wrap_socket without server_hostname, which a verifying context refuses; and it
        reports every failure as "Connection refused". Here a certificate that does
        not verify says so (BindFailed carries ssl's reason)."""
        settings = self.settings
        context = tls_context(settings)
        raw = socket.create_connection(
            (settings.host, settings.port), timeout=settings.response_timeout_s
        )
        try:
            return context.wrap_socket(
                raw, server_hostname=settings.tls_server_name or settings.host
            )
        except BaseException:
            raw.close()
            raise

    def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        # disconnect() warns when still "bound"; the session is over either way.
        client.state = consts.SMPP_CLIENT_STATE_OPEN
        with contextlib.suppress(OSError):
            client.disconnect()

    def _serve(self) -> None:
        client = self._client
        assert client is not None
        sock = client._socket  # smpplib keeps it private; we only select() and recv() on it
        assert sock is not None
        settings = self.settings
        buffer = bytearray()
        pending = getattr(sock, "pending", None)
        self._out.clear()  # nothing from an earlier session goes out on this one
        now = time.monotonic()
        next_enquire = now + settings.enquire_link_s
        enquire_deadline: float | None = None
        unbind_deadline: float | None = None
        if self._stop.is_set():
            unbind_deadline = self._send_unbind(client)
        while True:
            now = time.monotonic()
            wake_at = next_enquire
            for deadline in (enquire_deadline, unbind_deadline):
                if deadline is not None:
                    wake_at = min(wake_at, deadline)
            if self._outstanding:
                # Oldest first: dict order is send order and deadlines only grow.
                wake_at = min(wake_at, next(iter(self._outstanding.values()))[1])
            timeout = min(max(wake_at - now, 0.0), 1.0)
            if pending is not None and pending():
                # TLS: decrypted bytes already read off the socket; select cannot see them.
                readable = [sock]
            else:
                readable, _, _ = select.select([sock, self._wake_r], [], [], timeout)
            if self._wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    self._wake_r.recv(4096)
            self._wake_pending = False
            while True:
                try:
                    command = self._commands.get_nowait()
                except queue.Empty:
                    break
                kind = command[0]
                if kind == "resp":
                    _, session, sequence, response_id, status = command
                    if session == self._session:
                        self._out += encode_deliver_sm_resp(sequence, status, response_id)
                elif kind == "submit":
                    _, token, params = command
                    self._queue_submit(client, token, params)
                elif kind == "enquire_link":
                    pdu = smpp.make_pdu("enquire_link", client=client)  # a fresh sequence
                    if command[1] is not None:
                        self._probes[pdu.sequence] = command[1]
                    self._send_pdu(client, pdu)
                    enquire_deadline = time.monotonic() + settings.response_timeout_s
                elif kind == "unbind" and unbind_deadline is None:
                    unbind_deadline = self._send_unbind(client)
                elif kind == "close":
                    raise _Stop("closed without unbind_resp", clean=True)
            self._write_out(sock)
            if sock in readable:
                data = sock.recv(MAX_PDU)
                if not data:
                    raise _Stop("connection closed by the SMSC")
                buffer += data
                now = time.monotonic()
                next_enquire = now + settings.enquire_link_s
                position = 0
                while True:
                    length = frame_length(buffer, position)
                    if length is None or len(buffer) - position < length:
                        break
                    if length < 16 or length > MAX_PDU:
                        raise _Stop(f"framing error: command_length {length}")
                    raw = bytes(buffer[position : position + length])
                    position += length
                    outcome = self._handle(client, raw, now, unbind_deadline is not None)
                    if outcome == "enquire_link_resp":
                        enquire_deadline = None
                del buffer[:position]
                self._write_out(sock)
            now = time.monotonic()
            if unbind_deadline is not None and now >= unbind_deadline:
                raise _Stop("no unbind_resp in time", clean=True)
            if enquire_deadline is not None and now >= enquire_deadline:
                raise _Stop("enquire_link not answered in time")
            if enquire_deadline is None and now >= next_enquire and unbind_deadline is None:
                self._send_pdu(client, smpp.make_pdu("enquire_link", client=client))
                enquire_deadline = now + settings.response_timeout_s
                next_enquire = now + settings.enquire_link_s
            while self._outstanding:
                sequence, (token, deadline) = next(iter(self._outstanding.items()))
                if deadline > now:
                    break
                del self._outstanding[sequence]
                self._post(SubmitResult(token, None, None))
            self._flush()

    def _queue_submit(
        self, client: smpplib_client.Client, token: int, params: dict[str, Any]
    ) -> None:
        sequence = client.next_sequence()
        try:
            self._out += encode_submit_sm(sequence, **params)
        except (ValueError, TypeError, UnicodeEncodeError) as exc:
            # Nothing an SMSC would accept: the reply fails rather than the session.
            log.error("smpp.submit_unencodable", error=str(exc), link=self.label)
            self._post(SubmitResult(token, ESME_RSUBMITFAIL, None))
            return
        self._outstanding[sequence] = (token, time.monotonic() + self.settings.response_timeout_s)

    def _write_out(self, sock: socket.socket) -> None:
        if self._out:
            data, self._out = bytes(self._out), bytearray()
            sock.sendall(data)

    def _send_pdu(self, client: smpplib_client.Client, pdu: Any) -> None:
        """A PDU through smpplib, after what is queued: the SMSC sees them in order."""
        assert client._socket is not None
        self._write_out(client._socket)
        client.send_pdu(pdu)

    def _send_unbind(self, client: smpplib_client.Client) -> float:
        self._send_pdu(client, smpp.make_pdu("unbind", client=client))
        return time.monotonic() + self.settings.response_timeout_s

    def _send_response(self, command: str, sequence: int, status: int) -> None:
        client = self._client
        assert client is not None
        pdu = smpp.make_pdu(command, client=client, status=status)
        pdu.sequence = sequence  # smpplib would otherwise stamp its own next sequence
        self._send_pdu(client, pdu)

    def _send_generic_nack(self, sequence: int, status: int) -> None:
        client = self._client
        assert client is not None
        pdu = smpp.make_pdu("generic_nack", client=client, status=status)
        pdu.sequence = sequence
        self._send_pdu(client, pdu)

    def _handle(
        self, client: smpplib_client.Client, raw: bytes, now: float, unbinding: bool
    ) -> str:
        command_id = int.from_bytes(raw[4:8], "big")
        if command_id in (DELIVER_SM, DATA_SM):  # the hot path, without smpplib
            try:
                deliver = parse_mo(raw)
            except PduParseError as exc:
                log.error("smpp.deliver_sm_unreadable", error=str(exc), link=self.label)
                response_id = command_id | RESPONSE_BIT
                self._out += encode_deliver_sm_resp(exc.sequence, ESME_RX_P_APPN, response_id)
                return "deliver_sm"
            self._post(Delivered(self._session, deliver, now))
            return "deliver_sm"
        if command_id == SUBMIT_SM_RESP:
            sequence, status, message_id = parse_submit_sm_resp(raw)
            entry = self._outstanding.pop(sequence, None)
            if entry is not None:
                self._post(SubmitResult(entry[0], status, message_id))
            return "submit_sm_resp"
        try:
            pdu: Any = parse_other(raw, client)
        except PduParseError as exc:
            log.warning("smpp.pdu_unreadable", error=str(exc), link=self.label)
            if not exc.command_id & RESPONSE_BIT:  # a request: it must be answered
                self._send_generic_nack(exc.sequence, ESME_RINVCMDID)
            return "unknown"
        command: str = pdu.command
        if command == "generic_nack":
            entry = self._outstanding.pop(pdu.sequence, None)
            if entry is not None:
                self._post(SubmitResult(entry[0], pdu.status, None))
            else:
                log.warning("smpp.generic_nack", status=pdu.status, link=self.label)
        elif command == "enquire_link":
            self._send_response("enquire_link_resp", pdu.sequence, ESME_ROK)
        elif command == "enquire_link_resp":
            tag = self._probes.pop(pdu.sequence, None)
            if tag is not None:
                self._post(EnquireAnswered(self._session, tag))
            return "enquire_link_resp"
        elif command == "unbind":
            # smpplib does not answer unbind by itself.
            self._send_response("unbind_resp", pdu.sequence, ESME_ROK)
            raise _Stop("unbound by the SMSC")
        elif command == "unbind_resp":
            if unbinding:
                raise _Stop("unbound", clean=True, drained=True)
        elif command == "alert_notification":
            pass  # no response is defined for alert_notification
        elif not pdu.is_response():
            self._send_generic_nack(pdu.sequence, ESME_RINVCMDID)
        return command


def tls_context(settings: SmppLinkSettings) -> ssl.SSLContext:
    """The client side of SMPP over TLS: TLS 1.2 at least, the server's certificate
    verified (the system's CAs, or tls_ca_file), its name too unless switched off."""
    context = ssl.create_default_context(cafile=settings.tls_ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = settings.tls_verify_hostname
    if settings.tls_cert_file:
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file or None)
    return context


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, exceptions.PDUError) and len(exc.args) > 1:
        status = exc.args[1]
        return f"{consts.DESCRIPTIONS.get(status, 'status')} (0x{status:08x})"
    return str(exc) or type(exc).__name__
