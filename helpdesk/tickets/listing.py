"""Listing tickets a user may see: rights, views, filters, sorting, pagination and
the per-view counts of the sidebar. Shared by the web app and the API.

Rights: managers and admins see every queue; agents see the queues they
belong to. A ticket outside a user's rights is treated exactly like a
missing one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlalchemy import Select, case, false, func, select, union
from sqlalchemy.orm import Session, selectinload

from helpdesk.models import (
    ACTIVE_STATUSES,
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
from helpdesk.tickets import search

PER_PAGE = 50
MAX_ID = 2**31 - 1  # the largest INTEGER on PostgreSQL: ticket numbers, row ids, pages
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


class NoSuchQueue(ListingError):
    """The queue asked for does not exist or is not the user's (a 404, not a bad filter)."""


def parse_id(text: str | None) -> int | None:
    """``text`` as a ticket number or row id; None if it is not one, including a
    number too large for the database (which would raise rather than find nothing)."""
    text = (text or "").strip()
    if re.fullmatch(r"[0-9]{1,10}", text) and int(text) <= MAX_ID:
        return int(text)
    return None


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


def _filtered(session: Session, user: User, f: TicketFilter) -> Select[Ticket]:
    queue_ids = visible_queue_ids(session, user)
    stmt = select(Ticket).where(Ticket.queue_id.in_(queue_ids), Ticket.merged_into_id.is_(None))
    if f.sla or f.sort == "due":  # only then: the join costs every other list a lookup per row
        stmt = stmt.outerjoin(TicketSla, TicketSla.ticket_id == Ticket.id)
    if f.view not in VIEWS:
        raise ListingError(f"view must be one of {', '.join(VIEWS)}")
    if f.view == "mine":
        stmt = stmt.where(Ticket.assignee_id == user.id)
    elif f.view == "unassigned":
        stmt = stmt.where(Ticket.assignee_id.is_(None))
    if f.queue:
        queue_id = session.scalar(select(Queue.id).where(Queue.slug == f.queue))
        if queue_id is None or queue_id not in queue_ids:
            raise NoSuchQueue("no such queue")
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
        # The tag's id as a constant, so that PostgreSQL estimates how common the tag is.
        tag_id = session.scalar(select(Tag.id).where(Tag.name == f.tag.lower()))
        if tag_id is None:
            stmt = stmt.where(false())
        else:
            stmt = stmt.where(
                Ticket.id.in_(select(ticket_tags.c.ticket_id).where(ticket_tags.c.tag_id == tag_id))
            )
    if f.q and f.q.strip():
        # One IN over a UNION of ticket ids (not an OR of INs, which scans every ticket).
        matches = search.matching_ticket_ids(session, f.q)
        pattern = f"%{f.q.strip()}%"
        by_requester = select(Ticket.id).where(
            Ticket.requester_id.in_(select(Contact.id).where(Contact.email.ilike(pattern)))
        )
        found = [by_requester]
        if (number := parse_id(f.q)) is not None:
            found.append(select(Ticket.id).where(Ticket.number == number))
        if matches is not None:
            found.append(matches)
        stmt = stmt.where(Ticket.id.in_(union(*found)))
    return stmt


def list_tickets(session: Session, user: User, f: TicketFilter) -> Page:
    if not 1 <= f.page <= MAX_ID:
        raise ListingError(f"page must be from 1 to {MAX_ID}")
    if f.sort not in SORTS:
        raise ListingError(f"sort must be one of {', '.join(SORTS)}")
    stmt = _filtered(session, user, f)
    total = session.scalar(stmt.with_only_columns(func.count(Ticket.id))) or 0
    order = SORTS[f.sort].desc() if f.descending else SORTS[f.sort].asc()
    if f.sort == "due":  # tickets without a running clock last, either way
        order = order.nulls_last()
    tie = Ticket.id.desc() if f.descending else Ticket.id.asc()
    # The page's ids first (a narrow sort, from an index where possible), then those
    # tickets with what the list shows: eager joins on every matching row cost too much.
    ids = list(
        session.scalars(
            stmt.with_only_columns(Ticket.id)
            .order_by(order, tie)
            .limit(PER_PAGE)
            .offset((f.page - 1) * PER_PAGE)
        )
    )
    rows = session.scalars(
        select(Ticket).where(Ticket.id.in_(ids)).options(selectinload(Ticket.tags))
    ).unique()
    by_id = {ticket.id: ticket for ticket in rows}
    return Page([by_id[i] for i in ids if i in by_id], f.page, PER_PAGE, total)


def sidebar_counts(session: Session, user: User) -> dict[str, int]:
    """Active tickets per view and per visible queue, in one pass over the active tickets."""
    slugs = {queue.id: queue.slug for queue in visible_queues(session, user)}
    rows = session.execute(
        select(
            Ticket.queue_id,
            func.count().filter(Ticket.assignee_id == user.id),
            func.count().filter(Ticket.assignee_id.is_(None)),
            func.count(),
        )
        .where(
            Ticket.queue_id.in_(list(slugs)),
            Ticket.status.in_(ACTIVE_STATUSES),
            Ticket.merged_into_id.is_(None),
        )
        .group_by(Ticket.queue_id)
    ).all()
    counts = {
        "mine": sum(row[1] for row in rows),
        "unassigned": sum(row[2] for row in rows),
        "all": sum(row[3] for row in rows),
    }
    counts.update({f"queue:{slugs[queue_id]}": n for queue_id, _, _, n in rows})
    return counts
