"""The audit history of tickets: one ``TicketEvent`` per change (who, when, what).

SLA clocks read status changes from here, so every status change, by an agent
or by incoming mail, is recorded through ``record``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from helpdesk.models import Ticket, TicketEvent, User


def record(
    session: Session,
    ticket: Ticket,
    kind: str,
    *,
    actor: User | None,
    old: object = "",
    new: object = "",
    now: datetime,
) -> TicketEvent:
    event = TicketEvent(
        ticket_id=ticket.id,
        actor_id=actor.id if actor else None,
        kind=kind,
        old_value=str(old if old is not None else "")[:400],
        new_value=str(new if new is not None else "")[:400],
        created_at=now,
    )
    session.add(event)
    return event
