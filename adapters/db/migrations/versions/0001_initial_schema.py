"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-27 18:36:34.225960
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("account", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("account", name=op.f("pk_accounts")),
    )
    op.create_table(
        "messages",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("direction", sa.String(length=3), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("short_number", sa.String(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("account", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("processed_at", sa.DateTime(), nullable=True),
        sa.Column("reply_to", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("external_id", sa.String(length=128), nullable=True),
        sa.Column("dedupe_key", sa.String(length=128), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("transport_id", sa.String(length=128), nullable=True),
        sa.Column("delivery_status", sa.String(length=32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(), nullable=True),
        sa.Column("parts", sa.Integer(), nullable=False),
        sa.Column("incomplete", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["reply_to"], ["messages.id"], name=op.f("fk_messages_reply_to_messages")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sa.UniqueConstraint("channel", "dedupe_key", name=op.f("uq_messages_channel_dedupe_key")),
        sa.UniqueConstraint("channel", "external_id", name=op.f("uq_messages_channel_external_id")),
        sa.UniqueConstraint("reply_to", name=op.f("uq_messages_reply_to")),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_messages_account"), ["account"], unique=False)
        batch_op.create_index(batch_op.f("ix_messages_created_at"), ["created_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_messages_phone_created_at"), ["phone", "created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_messages_status_direction"), ["status", "direction"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_messages_transport_id"), ["transport_id"], unique=False
        )

    op.create_table(
        "phone_preferences",
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("opted_out", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("phone", name=op.f("pk_phone_preferences")),
    )
    op.create_table(
        "account_phones",
        sa.Column("account", sa.String(length=32), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account"], ["accounts.account"], name=op.f("fk_account_phones_account_accounts")
        ),
        sa.PrimaryKeyConstraint("account", "phone", name=op.f("pk_account_phones")),
    )
    with op.batch_alter_table("account_phones", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_account_phones_phone"), ["phone"], unique=False)

    op.create_table(
        "meters",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("account", sa.String(length=32), nullable=False),
        sa.Column("serial", sa.String(length=32), nullable=False),
        sa.Column("zones", sa.Integer(), nullable=False),
        sa.Column("digits", sa.Integer(), nullable=False),
        sa.Column("last_t1", sa.BigInteger(), nullable=True),
        sa.Column("last_t2", sa.BigInteger(), nullable=True),
        sa.Column("last_t3", sa.BigInteger(), nullable=True),
        sa.Column("last_read_on", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account"], ["accounts.account"], name=op.f("fk_meters_account_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meters")),
        sa.UniqueConstraint("account", "serial", name=op.f("uq_meters_account_serial")),
    )
    op.create_table(
        "pending_confirmations",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("meter_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("t1", sa.BigInteger(), nullable=False),
        sa.Column("t2", sa.BigInteger(), nullable=True),
        sa.Column("t3", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["meter_id"], ["meters.id"], name=op.f("fk_pending_confirmations_meter_id_meters")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pending_confirmations")),
    )
    with op.batch_alter_table("pending_confirmations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_pending_confirmations_phone_meter_id"),
            ["phone", "meter_id"],
            unique=False,
        )

    op.create_table(
        "readings",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("meter_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("t1", sa.BigInteger(), nullable=False),
        sa.Column("t2", sa.BigInteger(), nullable=True),
        sa.Column("t3", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("submitted_at", sa.DateTime(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column(
            "inbound_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["meter_id"], ["meters.id"], name=op.f("fk_readings_meter_id_meters")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_readings")),
        sa.UniqueConstraint("meter_id", "period", name=op.f("uq_readings_meter_id_period")),
    )
    with op.batch_alter_table("readings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_readings_period"), ["period"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("readings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_readings_period"))

    op.drop_table("readings")
    with op.batch_alter_table("pending_confirmations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pending_confirmations_phone_meter_id"))

    op.drop_table("pending_confirmations")
    op.drop_table("meters")
    with op.batch_alter_table("account_phones", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_account_phones_phone"))

    op.drop_table("account_phones")
    op.drop_table("phone_preferences")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_messages_transport_id"))
        batch_op.drop_index(batch_op.f("ix_messages_status_direction"))
        batch_op.drop_index(batch_op.f("ix_messages_phone_created_at"))
        batch_op.drop_index(batch_op.f("ix_messages_created_at"))
        batch_op.drop_index(batch_op.f("ix_messages_account"))

    op.drop_table("messages")
    op.drop_table("accounts")
