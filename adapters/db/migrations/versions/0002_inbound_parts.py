"""inbound parts

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 18:58:52.080036
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbound_parts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("group_key", sa.String(length=200), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("reference", sa.Integer(), nullable=False),
        sa.Column("source_addr", sa.String(length=32), nullable=False),
        sa.Column("destination_addr", sa.String(length=32), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("data_coding", sa.Integer(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=True),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_parts")),
        sa.UniqueConstraint(
            "group_key", "sequence", name=op.f("uq_inbound_parts_group_key_sequence")
        ),
    )


def downgrade() -> None:
    op.drop_table("inbound_parts")
