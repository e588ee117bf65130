"""write API: token scope, name and revocation; stored answers to idempotent requests

Tokens made before keep scope ``read`` (all the API did then) and get a name
from their id.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

import helpdesk.models.base

revision = "0009"
down_revision = "0008"
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
    op.create_table(
        "api_idempotency",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("location", sa.String(length=2000), nullable=False),
        sa.Column("created_at", helpdesk.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["token_id"], ["api_tokens.id"],
            name=op.f("fk_api_idempotency_token_id_api_tokens"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_idempotency")),
    )  # fmt: skip
    op.create_index(
        "uq_api_idempotency_token_key", "api_idempotency", ["token_id", "key"], unique=True
    )
    op.create_index(
        op.f("ix_api_idempotency_created_at"), "api_idempotency", ["created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_table("api_idempotency")
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_column("revoked_at")
        batch_op.drop_column("scope")
        batch_op.drop_column("name")
