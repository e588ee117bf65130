"""lifecycle: who acted in the history; outbox rows built at send time

History rows say what kind of actor made the change and name it (a rule, an
API token, a customer), besides the user id they had. Outbox rows keep the
Message-ID of their mail (to match bounces and auto-replies to it), what came
back (``feedback``), and how to build the mail when it is sent (``spec``), so
``content`` may be empty.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ticket_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("actor_kind", sa.String(length=16), server_default="system", nullable=False)
        )
        batch_op.add_column(
            sa.Column("actor_label", sa.String(length=200), server_default="", nullable=False)
        )
    # Rows written before kept only the user: an agent, or (no user) the system.
    op.execute("UPDATE ticket_events SET actor_kind = 'agent' WHERE actor_id IS NOT NULL")

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("header_message_id", sa.String(length=998), server_default="", nullable=False)
        )
        batch_op.add_column(sa.Column("spec", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("feedback", sa.Text(), server_default="", nullable=False))
        batch_op.alter_column("content", existing_type=sa.LargeBinary(), nullable=True)
        batch_op.create_index(
            batch_op.f("ix_outbox_header_message_id"), ["header_message_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_header_message_id"))
        batch_op.alter_column("content", existing_type=sa.LargeBinary(), nullable=False)
        batch_op.drop_column("feedback")
        batch_op.drop_column("spec")
        batch_op.drop_column("header_message_id")
    with op.batch_alter_table("ticket_events", schema=None) as batch_op:
        batch_op.drop_column("actor_label")
        batch_op.drop_column("actor_kind")
