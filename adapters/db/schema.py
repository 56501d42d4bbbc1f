"""Tables, as SQLAlchemy Core metadata shared by the store and the migrations."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only makes INTEGER PRIMARY KEY an alias of the rowid (autoincrement).
Id = BigInteger().with_variant(Integer(), "sqlite")

accounts = Table(
    "accounts",
    metadata,
    Column("account", String(32), primary_key=True),
    Column("created_at", DateTime(), nullable=False),
    # Set by an import with --prune when billing no longer lists the account; the
    # SMS pipeline then treats it as unknown. History stays. NULL: open.
    Column("closed_at", DateTime()),
)

meters = Table(
    "meters",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account", String(32), ForeignKey("accounts.account"), nullable=False),
    Column("serial", String(32), nullable=False),
    Column("zones", Integer, nullable=False),
    Column("digits", Integer, nullable=False),
    Column("last_t1", BigInteger),
    Column("last_t2", BigInteger),
    Column("last_t3", BigInteger),
    Column("last_read_on", Date),
    # As accounts.closed_at: a meter billing no longer lists (replaced, removed).
    Column("closed_at", DateTime()),
    UniqueConstraint("account", "serial"),
)

account_phones = Table(
    "account_phones",
    metadata,
    Column("account", String(32), ForeignKey("accounts.account"), primary_key=True),
    Column("phone", String(20), primary_key=True),
    Column("source", String(8), nullable=False),  # import | reg
    Column("created_at", DateTime(), nullable=False),
    Index(None, "phone"),
)

readings = Table(
    "readings",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("meter_id", Id, ForeignKey("meters.id"), nullable=False),
    Column("period", String(7), nullable=False),
    Column("t1", BigInteger, nullable=False),
    Column("t2", BigInteger),
    Column("t3", BigInteger),
    Column("status", String(16), nullable=False),
    Column("submitted_at", DateTime(), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("phone", String(20)),
    Column("inbound_id", Id),
    UniqueConstraint("meter_id", "period"),
    Index(None, "period"),
)

# Timestamps are naive UTC in every table (the store converts at its edge).


def _not_null_only(name: str, *columns: str, not_null: str, unique: bool = False) -> Index:
    """An index over the rows where `not_null` is not NULL (SQLite and PostgreSQL)."""
    condition = text(f"{not_null} IS NOT NULL")
    return Index(name, *columns, unique=unique, sqlite_where=condition, postgresql_where=condition)


# Every inbound SMS and every reply. Outbound rows double as the outbox:
# status pending -> sending -> sent | failed.
messages = Table(
    "messages",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("direction", String(3), nullable=False),  # in | out
    Column("channel", String(16), nullable=False),
    Column("phone", String(20), nullable=False),
    Column("short_number", String(16), nullable=False),
    Column("text", Text, nullable=False),
    Column("outcome", String(32)),
    Column("account", String(32)),
    Column("created_at", DateTime(), nullable=False),
    Column("processed_at", DateTime()),
    Column("reply_to", Id, ForeignKey("messages.id")),
    # The replies to one inbound, from 0: one per account when a report of several
    # accounts does not fit two segments.
    Column("reply_index", Integer, nullable=False, server_default="0"),
    Column("external_id", String(128)),
    Column("dedupe_key", String(128)),
    # in: received | processed; out: pending | sending | sent | failed
    Column("status", String(16), nullable=False),
    Column("transport_id", String(128)),
    Column("delivery_status", String(32)),
    Column("error", Text),
    Column("attempts", Integer, nullable=False, default=0),
    Column("claimed_at", DateTime()),
    # The instance (see `instances`) that received an inbound SMS, or that holds the
    # claim of a reply being sent.
    Column("instance", String(128)),
    # Inbound over SMPP: "doubt" when its ESME_ROK may not have reached the SMSC (the
    # link died first, or the instance did): the next same-text copy from that phone
    # is then its redelivery, and the row becomes "redelivered". Otherwise NULL.
    Column("ack", String(12)),
    # SMPP: the link an inbound arrived on; for a reply, the link to send it on and
    # its group (any bound link of the group may carry it; [smpp.groups] fallbacks).
    Column("link", String(32)),
    Column("link_group", String(32)),
    Column("parts", Integer, nullable=False, default=1),
    Column("incomplete", Boolean, nullable=False, default=False),
    # Unique over the rows that have the key: most rows lack one of them (an SMPP MO
    # has no external_id, a reply no dedupe_key, an inbound no reply_to), and an index
    # entry for a NULL is a page written at every commit that no query reads
    # (migration 0007). NULLs never conflicted, so the rule is the one of a constraint.
    _not_null_only(
        "uq_messages_channel_external_id",
        "channel",
        "external_id",
        not_null="external_id",
        unique=True,
    ),
    _not_null_only(
        "uq_messages_channel_dedupe_key",
        "channel",
        "dedupe_key",
        not_null="dedupe_key",
        unique=True,
    ),
    _not_null_only(
        "uq_messages_reply_to_reply_index",
        "reply_to",
        "reply_index",
        not_null="reply_to",
        unique=True,
    ),
    Index(None, "phone", "created_at"),
    Index(None, "status", "direction"),
    _not_null_only("ix_messages_transport_id", "transport_id", not_null="transport_id"),
    Index(None, "account"),
    Index(None, "created_at"),
    # Only the few MO in doubt: every other row stays out of this index.
    Index(
        "ix_messages_doubt",
        "phone",
        sqlite_where=text("ack = 'doubt'"),
        postgresql_where=text("ack = 'doubt'"),
    ),
)

pending_confirmations = Table(
    "pending_confirmations",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("phone", String(20), nullable=False),
    Column("meter_id", Id, ForeignKey("meters.id"), nullable=False),
    Column("t1", BigInteger, nullable=False),
    Column("t2", BigInteger),
    Column("t3", BigInteger),
    Column("created_at", DateTime(), nullable=False),
    Index(None, "phone", "meter_id"),
)

phone_preferences = Table(
    "phone_preferences",
    metadata,
    Column("phone", String(20), primary_key=True),
    Column("opted_out", Boolean, nullable=False),
    Column("updated_at", DateTime(), nullable=False),
)

# Parts of concatenated MO held until the whole message is accepted: a part is
# acknowledged to the SMSC only once it is here (see adapters/smpp/reassembly.py).
inbound_parts = Table(
    "inbound_parts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("group_key", String(200), nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("total", Integer, nullable=False),
    Column("reference", Integer, nullable=False),
    Column("source_addr", String(32), nullable=False),
    Column("destination_addr", String(32), nullable=False),
    Column("phone", String(20), nullable=False),
    Column("data_coding", Integer, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("external_id", String(128)),
    Column("received_at", DateTime(), nullable=False),
    UniqueConstraint("group_key", "sequence"),
)

# Wrong ops tokens per client address: the guessing throttle holds across instances.
ops_login_failures = Table(
    "ops_login_failures",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("address", String(64), nullable=False),
    Column("failed_at", DateTime(), nullable=False),
    Index(None, "address", "failed_at"),
)

# Every `serve` that runs or ran on this database, by its name (`[gateway]
# instance_name`, or host:port). The heartbeat tells live from dead: a dead instance's
# claimed replies go back to the outbox and its unconfirmed MO come into doubt.
instances = Table(
    "instances",
    metadata,
    Column("name", String(128), primary_key=True),
    # A new one per start: a second process under the same name is noticed.
    Column("run_id", String(32), nullable=False),
    Column("host", String(128), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", DateTime(), nullable=False),
    Column("heartbeat_at", DateTime(), nullable=False),
    # Every MO this instance received with an id up to this one is known to have
    # been acknowledged to its SMSC.
    Column("mo_confirmed_id", BigInteger),
    # Set once its claims were released after it died or stopped.
    Column("released_at", DateTime()),
)
