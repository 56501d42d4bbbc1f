"""Plain data the whole gateway speaks: accounts, meters, readings, messages, outcomes.

Nothing here touches a database, a socket or a parser library; adapters convert
their own representations into these dataclasses at the edge.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime


class Zone(enum.IntEnum):
    """A tariff zone (register) of a meter.

    Two-zone meters: T1 = day, T2 = night.
    Three-zone meters (Russian convention): T1 = peak, T2 = night, T3 = semi-peak.
    """

    T1 = 1
    T2 = 2
    T3 = 3


class Outcome(enum.StrEnum):
    """Stable outcome codes, stored with every inbound message and shown to ops."""

    ACCEPTED = "accepted"
    ACCEPTED_NEXT_PERIOD = "accepted_next_period"
    CORRECTED = "corrected"
    DUPLICATE = "duplicate"
    CONFIRM_NEEDED = "confirm_needed"
    CONFIRMED = "confirmed"
    HELP = "help"
    LAST_READING = "last_reading"
    REGISTERED = "registered"
    OPTED_OUT = "opted_out"
    OPTED_IN = "opted_in"
    UNPARSED = "unparsed"
    UNKNOWN_ACCOUNT = "unknown_account"
    METER_REQUIRED = "meter_required"
    UNKNOWN_METER = "unknown_meter"
    ZONE_COUNT = "zone_count"
    TOO_MANY_DIGITS = "too_many_digits"
    LOWER_THAN_PREVIOUS = "lower_than_previous"
    PHONE_NOT_REGISTERED = "phone_not_registered"
    RATE_LIMITED = "rate_limited"
    OUTSIDE_WINDOW = "outside_window"

    @property
    def books_reading(self) -> bool:
        """True when this outcome means a reading was written to a billing period."""
        return self in _BOOKING_OUTCOMES

    @property
    def is_error(self) -> bool:
        """True when the subscriber has to send something else."""
        return self in _ERROR_OUTCOMES


_BOOKING_OUTCOMES = frozenset(
    {Outcome.ACCEPTED, Outcome.ACCEPTED_NEXT_PERIOD, Outcome.CORRECTED, Outcome.CONFIRMED}
)
_ERROR_OUTCOMES = frozenset(
    {
        Outcome.UNPARSED,
        Outcome.UNKNOWN_ACCOUNT,
        Outcome.METER_REQUIRED,
        Outcome.UNKNOWN_METER,
        Outcome.ZONE_COUNT,
        Outcome.TOO_MANY_DIGITS,
        Outcome.LOWER_THAN_PREVIOUS,
        Outcome.PHONE_NOT_REGISTERED,
        Outcome.RATE_LIMITED,
        Outcome.OUTSIDE_WINDOW,
    }
)


class Channel(enum.StrEnum):
    """Where an inbound SMS came from and where its reply goes."""

    SMPP = "smpp"
    TWILIO = "twilio"
    CLI = "cli"


class ReadingStatus(enum.StrEnum):
    """How a booked reading got into its billing period (exported to billing)."""

    ACCEPTED = "accepted"
    CONFIRMED = "confirmed"


@dataclass(frozen=True, slots=True)
class Meter:
    """One electricity meter of an account, with its last known reading."""

    account: str
    serial: str
    zones: int
    digits: int
    last_values: tuple[int, ...] | None = None
    last_read_on: date | None = None
    id: int | None = None

    @property
    def register_limit(self) -> int:
        """The first value the register cannot show (10 ** digits)."""
        return int(10**self.digits)


@dataclass(frozen=True, slots=True)
class Account:
    """A subscriber's personal account (лицевой счёт) with its meters and phones."""

    account: str
    meters: tuple[Meter, ...]
    phones: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class BookedReading:
    """A reading booked into a billing period (one per meter and period)."""

    meter: Meter
    period: str  # YYYY-MM
    values: tuple[int, ...]  # one per zone, T1 first
    status: ReadingStatus
    submitted_at: datetime
    channel: str
    phone: str | None = None
    inbound_id: int | None = None


@dataclass(frozen=True, slots=True)
class PreviousReading:
    """The reading consumption is computed against: booked earlier, or billing's latest
    (the accounts file's last_t1..3 and last_read_on: also readings from the web
    cabinet, the app, smart meters, inspectors)."""

    values: tuple[int, ...]
    read_on: date
    from_billing: bool = False


@dataclass(frozen=True, slots=True)
class InboundSms:
    """An SMS from a subscriber, as an adapter received it."""

    channel: str
    phone: str  # E.164 with leading +, normalised by the adapter edge
    short_number: str
    text: str
    received_at: datetime
    # Identity the transport gives the message (SMSC message id, Twilio MessageSid);
    # a redelivery with the same id is the same message.
    external_id: str | None = None
    # Set where the transport gives no id: a key that is equal for redeliveries.
    dedupe_key: str | None = None
    parts: int = 1
    incomplete: bool = False
    # A transport without message ids (SMPP without mo_id_tlv): this message is the
    # redelivery of an earlier one from this phone with the same text only if that one
    # is in doubt (its acknowledgement may have been lost); otherwise it is new.
    may_be_redelivery: bool = False
    # SMPP: the link it arrived on and that link's group; its reply goes back there.
    link: str | None = None
    link_group: str | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """What the gateway answers to one inbound SMS.

    `text` is None when no reply is due (rate-limit silence, a repeated duplicate).
    `further` are the SMS after the first, as (text, outbound id): an SMS with readings
    for several accounts whose report does not fit two segments is answered with one
    SMS per account.
    """

    outcome: Outcome
    text: str | None
    inbound_id: int | None = None
    outbound_id: int | None = None
    extra: dict[str, str] = field(default_factory=dict)
    further: tuple[tuple[str, int], ...] = ()
