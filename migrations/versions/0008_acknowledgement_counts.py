"""acknowledgement counts per hour, in all and per recipient domain (issue 10, backscatter caps)

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

import helpdesk.models.base

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "acknowledgement_counts",
        sa.Column("scope", sa.String(length=320), nullable=False),
        sa.Column("hour", helpdesk.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "hour", name=op.f("pk_acknowledgement_counts")),
    )


def downgrade() -> None:
    op.drop_table("acknowledgement_counts")
