"""Bulk triage: one action (assign, move, status, close) on several tickets,
each ticket fetched through the acting user's rights."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.accounts.users import by_email
from helpdesk.models import Queue, Ticket, User, user_queues
from helpdesk.tickets import lifecycle
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
    now: datetime,
) -> int:
    """Apply the action to every ticket the actor can see; returns how many there were.

    Raises ``BulkError`` when the action or a ticket refuses it; the changes
    made to earlier tickets are then in the session, and the caller, who owns
    the transaction, must not commit it.
    """
    if action not in ACTIONS:
        raise BulkError("choose an action")
    if not numbers:
        raise BulkError("select at least one ticket")
    if len(numbers) > MAX_TICKETS:
        raise BulkError(f"at most {MAX_TICKETS} tickets at once")
    change = _change(session, action, value)
    tickets = list(
        session.scalars(
            select(Ticket).where(
                Ticket.number.in_(numbers), Ticket.queue_id.in_(visible_queue_ids(session, actor))
            )
        )
    )
    for ticket in tickets:
        try:
            lifecycle.update(session, ticket, actor=actor, now=now, **change)
        except lifecycle.TicketError as exc:
            raise BulkError(f"ticket {ticket.number}: {exc}") from exc
    return len(tickets)


def _change(session: Session, action: str, value: str) -> dict[str, Any]:
    """The fields to set, as ``lifecycle.update`` takes them."""
    if action == "status":
        return {"status": value}
    if action == "close":
        return {"status": "closed"}
    if action == "assign":
        if value in ("", "none"):
            return {"assignee": None}
        assignee = by_email(session, value)
        if assignee is None:
            raise BulkError("no such user")
        return {"assignee": assignee}
    queue = session.scalars(select(Queue).where(Queue.slug == value)).one_or_none()
    if queue is None:
        raise BulkError("no such queue")
    return {"queue": queue}
