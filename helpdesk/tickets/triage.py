"""Triage: changing a ticket's status, priority, assignee, queue and tags, and
merging tickets. Every change is written to the ticket's audit history.

Functions take the acting user and check nothing about rights: the caller
(web view, API) has already fetched the ticket through the user's rights.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.models import (
    PRIORITIES,
    STATUSES,
    Queue,
    Tag,
    Ticket,
    TicketCC,
    User,
)
from helpdesk.outbound.notifications import notify
from helpdesk.settings import Settings
from helpdesk.sla.service import refresh as refresh_sla
from helpdesk.tickets.history import record

TAG_RE = re.compile(r"^[\w][\w .:/+-]{0,63}$", re.UNICODE)


class TriageError(ValueError):
    """The change is not allowed or not valid; the message is safe to show."""


def set_status(
    session: Session, ticket: Ticket, status: str, *, actor: User, now: datetime
) -> None:
    if status not in STATUSES:
        raise TriageError(f"status must be one of {', '.join(STATUSES)}")
    if ticket.merged_into_id is not None:
        raise TriageError("a merged ticket cannot change status")
    if status == ticket.status:
        return
    record(session, ticket, "status", actor=actor, old=ticket.status, new=status, now=now)
    ticket.status = status
    if status == "resolved":
        ticket.resolved_at = now
    elif status == "closed":
        ticket.closed_at = now
        ticket.resolved_at = ticket.resolved_at or now
    else:
        ticket.resolved_at = None
        ticket.closed_at = None
    ticket.updated_at = now
    refresh_sla(session, ticket, now=now)


def set_priority(
    session: Session, ticket: Ticket, priority: str, *, actor: User, now: datetime
) -> None:
    if priority not in PRIORITIES:
        raise TriageError(f"priority must be one of {', '.join(PRIORITIES)}")
    if priority == ticket.priority:
        return
    record(session, ticket, "priority", actor=actor, old=ticket.priority, new=priority, now=now)
    ticket.priority = priority
    ticket.updated_at = now
    refresh_sla(session, ticket, now=now)  # the policy may depend on the priority


def can_work_in(user: User, queue: Queue) -> bool:
    return user.sees_all_queues or any(q.id == queue.id for q in user.queues)


def assign(
    session: Session,
    ticket: Ticket,
    assignee: User | None,
    *,
    actor: User,
    settings: Settings,
    now: datetime,
) -> None:
    """Assign (or, with None, unassign); the assignee must be able to see the ticket."""
    if assignee is not None and (not assignee.active or not can_work_in(assignee, ticket.queue)):
        raise TriageError(f"{assignee.email} cannot work in {ticket.queue.slug}")
    if (assignee.id if assignee else None) == ticket.assignee_id:
        return
    old = ticket.assignee.email if ticket.assignee else ""
    record(
        session,
        ticket,
        "assignee",
        actor=actor,
        old=old,
        new=assignee.email if assignee else "",
        now=now,
    )
    ticket.assignee = assignee
    ticket.updated_at = now
    if assignee is not None:
        session.flush()
        notify(session, ticket, "assigned", settings=settings, now=now, actor_id=actor.id)


def move(session: Session, ticket: Ticket, queue: Queue, *, actor: User, now: datetime) -> None:
    if not can_work_in(actor, queue):
        raise TriageError(f"you cannot move tickets into {queue.slug}")
    if queue.id == ticket.queue_id:
        return
    record(session, ticket, "queue", actor=actor, old=ticket.queue.slug, new=queue.slug, now=now)
    ticket.queue = queue
    ticket.queue_id = queue.id
    if ticket.assignee is not None and not can_work_in(ticket.assignee, queue):
        record(session, ticket, "assignee", actor=actor, old=ticket.assignee.email, new="", now=now)
        ticket.assignee = None
    ticket.updated_at = now
    refresh_sla(session, ticket, now=now)  # re-evaluated from the start under the new policy


def parse_tags(text: str) -> list[str]:
    names = []
    for raw in re.split(r"[,\n]", text):
        name = raw.strip().lower()
        if not name:
            continue
        if not TAG_RE.match(name):
            raise TriageError(f"not a valid tag: {name[:70]!r}")
        if name not in names:
            names.append(name)
    return names


def set_tags(
    session: Session, ticket: Ticket, names: list[str], *, actor: User, now: datetime
) -> None:
    old = [tag.name for tag in ticket.tags]
    if sorted(old) == sorted(names):
        return
    existing = {t.name: t for t in session.scalars(select(Tag).where(Tag.name.in_(names)))}
    tags = [existing.get(name) or Tag(name=name) for name in names]
    record(session, ticket, "tags", actor=actor, old=", ".join(old), new=", ".join(names), now=now)
    ticket.tags = tags
    ticket.updated_at = now


def merge(session: Session, source: Ticket, target: Ticket, *, actor: User, now: datetime) -> None:
    """Merge ``source`` into ``target``: its messages move, later mail follows (threads)."""
    if source.id == target.id:
        raise TriageError("a ticket cannot be merged into itself")
    if source.merged_into_id is not None:
        raise TriageError(f"ticket {source.number} is already merged")
    if target.merged_into_id is not None:
        raise TriageError(f"ticket {target.number} is itself merged")
    for message in list(source.messages):
        message.ticket = target
    # The source's people keep getting replies: its requester and CCs become CCs.
    people = [source.requester, *source.ccs]
    known = {target.requester_id, *(link.contact_id for link in target.cc_links)}
    for contact in people:
        if contact.id not in known:
            target.cc_links.append(TicketCC(contact=contact))
            known.add(contact.id)
    record(session, source, "merge", actor=actor, new=f"#{target.number}", now=now)
    record(session, target, "merge", actor=actor, old=f"#{source.number}", now=now)
    source.merged_into_id = target.id
    record(session, source, "status", actor=actor, old=source.status, new="closed", now=now)
    source.status = "closed"
    source.closed_at = now
    source.updated_at = target.updated_at = now
    refresh_sla(session, source, now=now)
    refresh_sla(session, target, now=now)
