"""Listing tickets a user may see: rights, filters and pagination, shared by API and UI."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session, selectinload

from helpdesk.models import STATUSES, Contact, Message, Queue, Ticket, User

PER_PAGE = 50


class ListingError(ValueError):
    """A filter value is not valid; the message is safe to show."""


def visible_queue_ids(session: Session, user: User) -> list[int]:
    if user.sees_all_queues:
        return list(session.scalars(select(Queue.id)))
    return [queue.id for queue in user.queues]


def visible_ticket(session: Session, user: User, number: int) -> Ticket | None:
    """The ticket if the user may see it; None whether it is missing or forbidden."""
    stmt = (
        select(Ticket)
        .where(Ticket.number == number, Ticket.queue_id.in_(visible_queue_ids(session, user)))
        .options(selectinload(Ticket.messages).selectinload(Message.attachments))
    )
    return session.scalars(stmt).one_or_none()


@dataclass
class TicketFilter:
    queue: str | None = None
    status: str | None = None
    q: str | None = None
    page: int = 1


@dataclass
class Page:
    tickets: list[Ticket]
    page: int
    per_page: int
    total: int


def _filtered(session: Session, user: User, filters: TicketFilter) -> Select:
    stmt = select(Ticket).where(Ticket.queue_id.in_(visible_queue_ids(session, user)))
    if filters.queue:
        stmt = stmt.join(Queue, Ticket.queue_id == Queue.id).where(Queue.slug == filters.queue)
    if filters.status:
        if filters.status not in STATUSES:
            raise ListingError(f"status must be one of {', '.join(STATUSES)}")
        stmt = stmt.where(Ticket.status == filters.status)
    if filters.q:
        pattern = f"%{filters.q.strip()}%"
        stmt = stmt.join(Contact, Ticket.requester_id == Contact.id).where(
            or_(Ticket.subject.ilike(pattern), Contact.email.ilike(pattern))
        )
    return stmt


def list_tickets(session: Session, user: User, filters: TicketFilter) -> Page:
    if filters.page < 1:
        raise ListingError("page must be 1 or more")
    stmt = _filtered(session, user, filters)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.scalars(
        stmt.order_by(Ticket.updated_at.desc(), Ticket.id.desc())
        .limit(PER_PAGE)
        .offset((filters.page - 1) * PER_PAGE)
    )
    return Page(list(rows.unique()), filters.page, PER_PAGE, total)
