"""Full-text search over messages (subjects, bodies, sender addresses).

SQLite uses the FTS5 table ``messages_fts``; PostgreSQL the GIN expression
index ``fts_messages`` (both made by migration 0002). The query is built
from the user's words, so no search syntax can be injected.
"""

from __future__ import annotations

import re

from sqlalchemy import Integer, Select, column, select, text
from sqlalchemy.orm import Session

from helpdesk.models import Message

# Must be the exact expression of the index in migration 0002.
PG_DOCUMENT = (
    "to_tsvector('simple', coalesce(messages.subject, '') || ' ' || "
    "coalesce(messages.from_address, '') || ' ' || left(coalesce(messages.text_body, ''), 100000))"
)
MAX_TERMS = 12


def terms(query: str) -> list[str]:
    """The words of a query, without operators; an address stays one term."""
    words = re.findall(r"[\w.@+-]+", query, flags=re.UNICODE)
    return [w.strip(".-+") for w in words if w.strip(".-+")][:MAX_TERMS]


def matching_ticket_ids(session: Session, query: str) -> Select[int] | None:
    """A SELECT of ticket ids whose messages match every term, or None for no terms."""
    words = terms(query)
    if not words:
        return None
    if session.get_bind().dialect.name == "sqlite":
        # Each term a quoted phrase (addresses become phrases of their parts).
        match = " ".join('"' + w.replace('"', '""') + '"' for w in words)
        rowids = text("SELECT rowid FROM messages_fts WHERE messages_fts MATCH :match").bindparams(
            match=match
        )
        return (
            select(Message.ticket_id)
            .where(Message.id.in_(rowids.columns(column("rowid", Integer))))
            .distinct()
        )
    # && combines tsqueries (a bare & is only an operator inside one tsquery's text).
    tsquery = " && ".join(f"phraseto_tsquery('simple', :t{i})" for i in range(len(words)))
    condition = text(f"{PG_DOCUMENT} @@ ({tsquery})").bindparams(
        **{f"t{i}": w for i, w in enumerate(words)}
    )
    return select(Message.ticket_id).where(condition).distinct()
