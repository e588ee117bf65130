"""Reading a ticket's audit history (one ``TicketEvent`` per change: who, when, what).

Only the lifecycle writes history (``helpdesk.tickets.operation``); SLA
clocks read status changes from it. This module reads it for people.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.models import Ticket, TicketEvent
from helpdesk.tickets.actors import describe


def of(session: Session, ticket: Ticket) -> list[TicketEvent]:
    """The ticket's history, oldest first."""
    stmt = select(TicketEvent).where(TicketEvent.ticket_id == ticket.id).order_by(TicketEvent.id)
    return list(session.scalars(stmt))


def actor_text(row: TicketEvent) -> str:
    """Who made the change, for the ticket page: "by anna@…", "by rule Invoices", ..."""
    return describe(row.actor_kind, row.actor_label, row.actor.email if row.actor else None)
