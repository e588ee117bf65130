"""Bulk triage: one action (assign, move, status, close) on several tickets,
each ticket fetched through the acting user's rights."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.accounts.users import by_email
from helpdesk.models import Queue, Ticket, User, user_queues
from helpdesk.settings import Settings
from helpdesk.tickets import triage
from helpdesk.tickets.listing import visible_queue_ids

ACTIONS = ("assign", "move", "status", "close")
MAX_TICKETS = 500


class BulkError(ValueError):
    """The bulk action cannot be done; the message is safe to show."""


def assignable_agents(session: Session, actor: User) -> list[User]:
    """Active users who can work in at least one queue the actor sees."""
    queue_ids = visible_queue_ids(session, actor)
    members = select(user_queues.c.user_id).where(user_queues.c.queue_id.in_(queue_ids))
    stmt = select(User).where(
        User.active, (User.id.in_(members)) | User.role.in_(("manager", "admin"))
    )
    return list(session.scalars(stmt.order_by(User.email)))


def apply(
    session: Session,
    actor: User,
    numbers: list[int],
    *,
    action: str,
    value: str,
    settings: Settings,
    now: datetime,
) -> int:
    """Apply the action to every ticket the actor can see; returns how many changed."""
    if action not in ACTIONS:
        raise BulkError("choose an action")
    if not numbers:
        raise BulkError("select at least one ticket")
    if len(numbers) > MAX_TICKETS:
        raise BulkError(f"at most {MAX_TICKETS} tickets at once")
    tickets = list(
        session.scalars(
            select(Ticket).where(
                Ticket.number.in_(numbers), Ticket.queue_id.in_(visible_queue_ids(session, actor))
            )
        )
    )
    try:
        for ticket in tickets:
            _one(session, actor, ticket, action, value, settings, now)
    except triage.TriageError as exc:
        session.rollback()
        raise BulkError(f"ticket {ticket.number}: {exc}") from exc
    return len(tickets)


def _one(
    session: Session,
    actor: User,
    ticket: Ticket,
    action: str,
    value: str,
    settings: Settings,
    now: datetime,
) -> None:
    if action == "status":
        triage.set_status(session, ticket, value, actor=actor, now=now)
    elif action == "close":
        triage.set_status(session, ticket, "closed", actor=actor, now=now)
    elif action == "assign":
        assignee = None if value in ("", "none") else by_email(session, value)
        if value not in ("", "none") and assignee is None:
            raise triage.TriageError("no such user")
        triage.assign(session, ticket, assignee, actor=actor, settings=settings, now=now)
    elif action == "move":
        queue = session.scalars(select(Queue).where(Queue.slug == value)).one_or_none()
        if queue is None:
            raise triage.TriageError("no such queue")
        triage.move(session, ticket, queue, actor=actor, now=now)
