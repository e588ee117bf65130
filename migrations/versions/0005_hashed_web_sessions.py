"""web sessions keep only the SHA-256 of their id

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 09:00:00

Existing rows hold ids in clear; they are deleted rather than rehashed (the
session cookies they belong to are signed with the old key anyway, and no
longer verify under the derived session key): everyone signs in again once.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sa.text("DELETE FROM web_sessions"))
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.alter_column(
            "id",
            new_column_name="id_hash",
            existing_type=sa.String(length=64),
            existing_nullable=False,
        )


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM web_sessions"))
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.alter_column(
            "id_hash",
            new_column_name="id",
            existing_type=sa.String(length=64),
            existing_nullable=False,
        )
