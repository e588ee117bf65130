"""intake spool: raw mail is stored before it is applied; the applier's lease

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

import helpdesk.models.base

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=False),
        sa.Column("acquired_at", helpdesk.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", helpdesk.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    with op.batch_alter_table("raw_mails", schema=None) as batch_op:
        batch_op.drop_index("ix_raw_mails_state")
        batch_op.create_index("ix_raw_mails_state_id", ["state", "id"], unique=False)
        # Same bytes, same row: before this, identical bytes always had the same
        # dedup_key (unique), so no existing database holds two rows with one hash.
        batch_op.create_index("ix_raw_mails_sha256", ["sha256"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("raw_mails", schema=None) as batch_op:
        batch_op.drop_index("ix_raw_mails_sha256")
        batch_op.drop_index("ix_raw_mails_state_id")
        batch_op.create_index("ix_raw_mails_state", ["state"], unique=False)
    op.drop_table("leases")
