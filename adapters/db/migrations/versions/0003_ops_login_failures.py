"""ops login failures

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 23:15:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ops_login_failures",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("failed_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ops_login_failures")),
    )
    with op.batch_alter_table("ops_login_failures", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ops_login_failures_address_failed_at"),
            ["address", "failed_at"],
            unique=False,
        )


def downgrade() -> None:
    op.drop_table("ops_login_failures")
