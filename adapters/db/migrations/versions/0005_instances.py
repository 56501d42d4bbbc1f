"""instances with heartbeats; who received or claimed each message; MO in doubt;
the SMPP link (and its group) of each message

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 16:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instances",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("host", sa.String(length=128), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=False),
        sa.Column("mo_confirmed_id", sa.BigInteger(), nullable=True),
        sa.Column("released_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_instances")),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("instance", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("ack", sa.String(length=12), nullable=True))
        batch_op.add_column(sa.Column("link", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("link_group", sa.String(length=32), nullable=True))
        batch_op.create_index(
            "ix_messages_doubt",
            ["phone"],
            unique=False,
            sqlite_where=sa.text("ack = 'doubt'"),
            postgresql_where=sa.text("ack = 'doubt'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_doubt")
        batch_op.drop_column("link_group")
        batch_op.drop_column("link")
        batch_op.drop_column("ack")
        batch_op.drop_column("instance")
    op.drop_table("instances")
