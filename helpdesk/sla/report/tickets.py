"""Which tickets a report reads, and its per-ticket rows (the breaches, the tickets CSV).

A report reads the tickets with an SLA policy that were not merged away, of
its queue and agent if it names them, created before the period's end and
either created in it or still unresolved at its start (``in_period``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import Session

from helpdesk.models import Queue, Ticket, TicketSla, User
from helpdesk.sla.report.period import ReportQuery


@dataclass
class TicketRow:
    """One ticket as the report sees it (also the per-ticket CSV export)."""

    number: int
    subject: str
    queue: str
    assignee: str
    status: str
    created_at: datetime
    resolved_at: datetime | None
    first_response_minutes: float | None
    first_response_breached_at: datetime | None
    first_response_at: datetime | None
    resolution_minutes: float | None
    resolution_breached_at: datetime | None
    next_response_breached_at: datetime | None
    next_response_outcome: bool


def scope(query: ReportQuery) -> Select[*tuple[Any, ...]]:
    """Tickets joined with their clocks, filtered by queue and agent, as ``TicketRow``s;
    other columns over the same tables with ``with_only_columns(...,
    maintain_column_froms=True)``."""
    stmt = (
        select(
            Ticket.number,
            Ticket.subject,
            Queue.slug,
            func.coalesce(User.email, ""),
            Ticket.status,
            Ticket.created_at,
            TicketSla.resolved_at,
            TicketSla.first_response_minutes,
            TicketSla.first_response_breached_at,
            TicketSla.first_response_at,
            TicketSla.resolution_minutes,
            TicketSla.resolution_breached_at,
            TicketSla.next_response_breached_at,
            next_response_outcome(),
        )
        .join(Queue, Queue.id == Ticket.queue_id)
        .join(TicketSla, TicketSla.ticket_id == Ticket.id)
        .outerjoin(User, User.id == Ticket.assignee_id)
        .where(Ticket.merged_into_id.is_(None), TicketSla.policy_id.is_not(None))
    )
    if query.queue:
        stmt = stmt.where(Queue.slug == query.queue)
    if query.agent:
        stmt = stmt.where(User.email == query.agent)
    return stmt


def in_period(query: ReportQuery) -> ColumnElement[bool]:
    """Created before the period's end, and created in it or unresolved at its start."""
    return and_(
        Ticket.created_at < query.end,
        or_(
            Ticket.created_at >= query.start,
            TicketSla.resolved_at.is_(None),
            TicketSla.resolved_at >= query.start,
        ),
    )


def next_response_outcome() -> ColumnElement[bool]:
    """Whether the next-response clock has an outcome: answered, or breached."""
    return or_(
        TicketSla.next_response_breached_at.is_not(None), TicketSla.next_response_answered > 0
    )


def outcome_columns() -> list[ColumnElement[bool]]:
    """A ticket's clock outcomes, in the order ``figures.count_ticket`` takes them: first
    response has an outcome (answered or breached), was breached; resolution was breached;
    next response has an outcome, was breached."""
    sla = TicketSla
    return [
        or_(sla.first_response_at.is_not(None), sla.first_response_breached_at.is_not(None)),
        sla.first_response_breached_at.is_not(None),
        sla.resolution_breached_at.is_not(None),
        next_response_outcome(),
        sla.next_response_breached_at.is_not(None),
    ]


def ticket_rows(session: Session, query: ReportQuery) -> list[TicketRow]:
    """Tickets created or resolved in the period, or in the backlog at its end."""
    stmt = scope(query).where(in_period(query))
    return [TicketRow(*row) for row in session.execute(stmt.order_by(Ticket.number))]


def breach_rows(session: Session, query: ReportQuery) -> list[TicketRow]:
    """Tickets created in the period with any clock breached, by number."""
    stmt = scope(query).where(
        Ticket.created_at >= query.start,
        Ticket.created_at < query.end,
        or_(
            TicketSla.first_response_breached_at.is_not(None),
            TicketSla.resolution_breached_at.is_not(None),
            TicketSla.next_response_breached_at.is_not(None),
        ),
    )
    rows = session.connection().execute(stmt.order_by(Ticket.number))  # Core: no ORM loading
    return [TicketRow(*r) for r in rows]
