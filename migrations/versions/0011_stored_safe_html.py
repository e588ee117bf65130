"""messages keep their HTML sanitised once (issue 10 row 3); existing rows filled here

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

from helpdesk.mail.display import prepare_html

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BATCH = 200


def upgrade() -> None:
    # A plain ADD/DROP COLUMN on both databases: a batch table copy would trip the
    # foreign keys that point at messages on SQLite.
    op.add_column("messages", sa.Column("html_safe", sa.Text(), nullable=True))
    # Backfill in batches of ids, each HTML sanitised once (a row the page meets
    # unfilled is sanitised on the fly, so an interrupted upgrade loses nothing).
    conn = op.get_bind()
    messages = sa.table(
        "messages", sa.column("id", sa.Integer), sa.column("html_body", sa.Text),
        sa.column("html_safe", sa.Text),
    )  # fmt: skip
    last = 0
    while True:
        rows = conn.execute(
            sa.select(messages.c.id, messages.c.html_body)
            .where(messages.c.id > last, messages.c.html_safe.is_(None))
            .order_by(messages.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        for row_id, html in rows:
            safe = prepare_html(html) if html else ""
            conn.execute(messages.update().where(messages.c.id == row_id).values(html_safe=safe))
        last = rows[-1][0]


def downgrade() -> None:
    op.execute("ALTER TABLE messages DROP COLUMN html_safe")
