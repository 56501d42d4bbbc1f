"""accounts and meters closed by an import with --prune

An account or meter that billing no longer lists is closed, not deleted: its
readings and messages stay for ops and export, and the SMS pipeline treats it as
unknown. A later import that lists it again reopens it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 16:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("closed_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("meters", schema=None) as batch_op:
        batch_op.add_column(sa.Column("closed_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("meters", schema=None) as batch_op:
        batch_op.drop_column("closed_at")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("closed_at")
