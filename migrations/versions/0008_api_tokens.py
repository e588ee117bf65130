"""api tokens: scope, name, revocation

Tokens made before keep scope ``read`` (all the API did then) and get a name
from their id.

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
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("name", sa.String(length=100), server_default="", nullable=False)
        )
        batch_op.add_column(
            sa.Column("scope", sa.String(length=8), server_default="read", nullable=False)
        )
        batch_op.add_column(
            sa.Column("revoked_at", helpdesk.models.base.UTCDateTime(timezone=True), nullable=True)
        )
    op.execute("UPDATE api_tokens SET name = 'token ' || CAST(id AS VARCHAR(20))")


def downgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_column("revoked_at")
        batch_op.drop_column("scope")
        batch_op.drop_column("name")
