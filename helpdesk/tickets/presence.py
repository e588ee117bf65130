"""Presence for the collision hint: who is viewing a ticket, and what happened on
it since an agent opened it."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.models import Message, Ticket, TicketViewer, User

FRESH = timedelta(seconds=60)


def touch(session: Session, ticket: Ticket, user: User, *, now: datetime) -> None:
    row = session.get(TicketViewer, (ticket.id, user.id))
    if row is None:
        session.add(TicketViewer(ticket_id=ticket.id, user_id=user.id, last_seen_at=now))
    else:
        row.last_seen_at = now


def other_viewers(session: Session, ticket: Ticket, user: User, *, now: datetime) -> list[User]:
    rows = session.scalars(
        select(TicketViewer).where(
            TicketViewer.ticket_id == ticket.id,
            TicketViewer.user_id != user.id,
            TicketViewer.last_seen_at >= now - FRESH,
        )
    )
    return [row.user for row in rows]


def newer_messages(session: Session, ticket: Ticket, user: User, after_id: int) -> list[Message]:
    """Messages added by others (or by mail) after the one the agent last saw."""
    stmt = select(Message).where(Message.ticket_id == ticket.id, Message.id > after_id)
    return [m for m in session.scalars(stmt.order_by(Message.id)) if m.author_id != user.id]
