"""several replies to one inbound SMS

An SMS with readings for several accounts whose report does not fit two segments
is answered with one reply per account: replies to one inbound are numbered.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 13:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("reply_index", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.drop_constraint("uq_messages_reply_to", type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_messages_reply_to_reply_index"), ["reply_to", "reply_index"]
        )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_constraint("uq_messages_reply_to_reply_index", type_="unique")
        batch_op.execute("DELETE FROM messages WHERE reply_index > 0")
        batch_op.create_unique_constraint("uq_messages_reply_to", ["reply_to"])
        batch_op.drop_column("reply_index")
