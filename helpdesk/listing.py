"""Listing tickets a user may see: rights, views, filters, sorting, pagination and
the per-view counts of the sidebar. Shared by the web app and the API.

Rights: managers and admins see every queue; agents see the queues they
belong to. A ticket outside a user's rights is treated exactly like a
missing one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Select, case, func, or_, select
from sqlalchemy.orm import Session, selectinload

from helpdesk import search
from helpdesk.models import (
    PRIORITIES,
    STATUSES,
    Contact,
    Message,
    Queue,
    Tag,
    Ticket,
    TicketSla,
    User,
    ticket_tags,
)

PER_PAGE = 50
ACTIVE_STATUSES = ("new", "open", "pending")
VIEWS = ("queue", "mine", "unassigned", "all")
SORTS = {
    "updated": Ticket.updated_at,
    "created": Ticket.created_at,
    "number": Ticket.number,
    "priority": case({p: i for i, p in enumerate(PRIORITIES)}, value=Ticket.priority),
    "status": case({s: i for i, s in enumerate(STATUSES)}, value=Ticket.status),
    "due": TicketSla.due_at,
}
SLA_STATES = ("running", "due_soon", "breached", "paused", "met", "none")


class ListingError(ValueError):
    """A filter value is not valid; the message is safe to show."""


def visible_queues(session: Session, user: User) -> list[Queue]:
    if user.sees_all_queues:
        return list(session.scalars(select(Queue).order_by(Queue.slug)))
    return sorted(user.queues, key=lambda q: q.slug)


def visible_queue_ids(session: Session, user: User) -> list[int]:
    return [queue.id for queue in visible_queues(session, user)]


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
    view: str = "all"
    queue: str | None = None
    status: str | None = None  # a status, "active" or "any"; None means "any"
    priority: str | None = None
    assignee: str | None = None  # a user's email, or "none"
    tag: str | None = None
    sla: str | None = None  # an SLA state, see SLA_STATES
    q: str | None = None
    sort: str = "updated"
    descending: bool = True
    page: int = 1


@dataclass
class Page:
    tickets: list[Ticket]
    page: int
    per_page: int
    total: int
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def _filtered(session: Session, user: User, f: TicketFilter) -> Select:
    queue_ids = visible_queue_ids(session, user)
    stmt = (
        select(Ticket)
        .outerjoin(TicketSla, TicketSla.ticket_id == Ticket.id)
        .where(Ticket.queue_id.in_(queue_ids), Ticket.merged_into_id.is_(None))
    )
    if f.view not in VIEWS:
        raise ListingError(f"view must be one of {', '.join(VIEWS)}")
    if f.view == "mine":
        stmt = stmt.where(Ticket.assignee_id == user.id)
    elif f.view == "unassigned":
        stmt = stmt.where(Ticket.assignee_id.is_(None))
    if f.queue:
        queue_id = session.scalar(select(Queue.id).where(Queue.slug == f.queue))
        if queue_id is None or queue_id not in queue_ids:
            raise ListingError("no such queue")
        stmt = stmt.where(Ticket.queue_id == queue_id)
    if f.status and f.status != "any":
        if f.status == "active":
            stmt = stmt.where(Ticket.status.in_(ACTIVE_STATUSES))
        elif f.status in STATUSES:
            stmt = stmt.where(Ticket.status == f.status)
        else:
            raise ListingError(f"status must be one of active, any, {', '.join(STATUSES)}")
    if f.priority:
        if f.priority not in PRIORITIES:
            raise ListingError(f"priority must be one of {', '.join(PRIORITIES)}")
        stmt = stmt.where(Ticket.priority == f.priority)
    if f.assignee:
        if f.assignee == "none":
            stmt = stmt.where(Ticket.assignee_id.is_(None))
        else:
            stmt = stmt.join(User, Ticket.assignee_id == User.id).where(User.email == f.assignee)
    if f.sla:
        if f.sla not in SLA_STATES:
            raise ListingError(f"sla must be one of {', '.join(SLA_STATES)}")
        stmt = stmt.where(TicketSla.state == f.sla)
    if f.tag:
        stmt = stmt.where(
            Ticket.id.in_(
                select(ticket_tags.c.ticket_id).join(Tag).where(Tag.name == f.tag.lower())
            )
        )
    if f.q and f.q.strip():
        matches = search.matching_ticket_ids(session, f.q)
        pattern = f"%{f.q.strip()}%"
        by_requester = select(Ticket.id).join(Contact, Ticket.requester_id == Contact.id)
        by_requester = by_requester.where(Contact.email.ilike(pattern))
        conditions = [Ticket.id.in_(by_requester)]
        if f.q.strip().isdigit():
            conditions.append(Ticket.number == int(f.q.strip()))
        if matches is not None:
            conditions.append(Ticket.id.in_(matches))
        stmt = stmt.where(or_(*conditions))
    return stmt


def list_tickets(session: Session, user: User, f: TicketFilter) -> Page:
    if f.page < 1:
        raise ListingError("page must be 1 or more")
    if f.sort not in SORTS:
        raise ListingError(f"sort must be one of {', '.join(SORTS)}")
    stmt = _filtered(session, user, f)
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    order = SORTS[f.sort].desc() if f.descending else SORTS[f.sort].asc()
    if f.sort == "due":  # tickets without a running clock last, either way
        order = order.nulls_last()
    tie = Ticket.id.desc() if f.descending else Ticket.id.asc()
    rows = session.scalars(
        stmt.order_by(order, tie)
        .options(selectinload(Ticket.tags))
        .limit(PER_PAGE)
        .offset((f.page - 1) * PER_PAGE)
    )
    return Page(list(rows.unique()), f.page, PER_PAGE, total)


def sidebar_counts(session: Session, user: User) -> dict[str, int]:
    """Active tickets per view and per visible queue, in two queries."""
    queue_ids = visible_queue_ids(session, user)
    active = (
        Ticket.queue_id.in_(queue_ids),
        Ticket.status.in_(ACTIVE_STATUSES),
        Ticket.merged_into_id.is_(None),
    )
    mine, unassigned, everything = session.execute(
        select(
            func.count().filter(Ticket.assignee_id == user.id),
            func.count().filter(Ticket.assignee_id.is_(None)),
            func.count(),
        ).where(*active)
    ).one()
    counts = {"mine": mine, "unassigned": unassigned, "all": everything}
    rows = session.execute(
        select(Queue.slug, func.count(Ticket.id))
        .join(Ticket, Ticket.queue_id == Queue.id)
        .where(*active)
        .group_by(Queue.slug)
    )
    counts.update({f"queue:{slug}": n for slug, n in rows})
    return counts
