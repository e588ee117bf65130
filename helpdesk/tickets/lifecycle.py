"""The ticket lifecycle: the one place that changes a ticket.

This module owns the ticket's fields (status, priority, assignee, queue, tags),
merges and SLA escalations; ``helpdesk.tickets.conversation`` owns what is
said on a ticket (opening it, customer messages, replies, notes) through the
same machinery (``helpdesk.tickets.operation``). Each call applies its change,
writes one history row per changed thing with the actor, and emits typed
events (``helpdesk.tickets.events``) to the session's subscribers, all in the
caller's transaction. Nothing else sets ``ticket.status`` or writes history;
the test suite enforces it (``operation.install_guard``).

The API (every function takes the caller's ``Session`` and ``now``; the caller
commits or rolls back; ``actor`` is an ``Actor``, or a ``User`` for an agent
acting in person):

- ``update(session, ticket, actor=, now=, status=, priority=, assignee=,
  queue=, tags=)``: any of the fields at once, validated together (a bad
  value changes nothing), one ``TicketUpdated`` with each changed field's
  before and after. ``assign``, ``move`` and ``set_tags`` are the
  one-field forms the web app uses.
- ``merge(session, source, target, ...)``: ``TicketMerged``, and the source's
  status change to closed as a ``TicketUpdated``.
- ``record_sla(session, ticket, clock=, level=, due=, running=, now=)``, for
  the escalation job: a history row and ``SlaWarning`` / ``SlaBreached``.
- ``message_sent`` / ``message_failed``, for the outbox's delivery
  bookkeeping: ``MessageSent`` / ``MessageFailed`` for messages of the thread.

Rights: the caller has fetched the ticket through the acting user's rights.
The lifecycle checks what depends on the change itself: an assignee must be
able to work in the ticket's queue, and an agent (or a token) may move a
ticket only into a queue they work in. Invalid changes raise ``TicketError``,
whose message is safe to show.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Final

from sqlalchemy import select
from sqlalchemy import update as sql_update
from sqlalchemy.orm import Session

from helpdesk.models import (
    DONE_STATUSES,
    PRIORITIES,
    STATUSES,
    Counter,
    OutboxMail,
    Queue,
    Tag,
    Ticket,
    TicketCC,
    User,
)
from helpdesk.tickets.actors import Actor, as_actor
from helpdesk.tickets.dispatch import dispatcher_of
from helpdesk.tickets.events import (
    Change,
    MessageFailed,
    MessageSent,
    SlaBreached,
    SlaWarning,
    TicketMerged,
    TicketUpdated,
)
from helpdesk.tickets.operation import Operation, operation

# Ticket.number is a 32-bit integer column.
MAX_NUMBER = 2**31 - 1
TAG_RE = re.compile(r"^[\w][\w .:/+-]{0,63}$", re.UNICODE)
SLA_LEVELS = ("warning", "breach")


class TicketError(ValueError):
    """The change is not allowed or not valid; the message is safe to show."""


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()


# --- Finding tickets ---------------------------------------------------------


def next_number(session: Session) -> int:
    """The next public ticket number; gapless, safe across processes."""
    stmt = (
        sql_update(Counter)
        .where(Counter.name == "ticket_number")
        .values(value=Counter.value + 1)
        .returning(Counter.value)
    )
    # The counter depends on nothing pending: no flush for it (one fewer per ticket).
    with session.no_autoflush:
        number = session.execute(stmt).scalar_one_or_none()
    if number is None:
        session.add(Counter(name="ticket_number", value=1))
        session.flush()
        number = 1
    return number


def by_number(session: Session, number: int) -> Ticket | None:
    """The ticket with this public number; None for a number no ticket can have.

    Numbers come from mail (subject tags), so they are checked against the
    32-bit column first: PostgreSQL refuses to compare with a larger value.
    """
    if not 0 < number <= MAX_NUMBER:
        return None
    return session.scalars(select(Ticket).where(Ticket.number == number)).one_or_none()


def resolve_merges(session: Session, ticket: Ticket) -> Ticket:
    """Follow merged_into links to the surviving ticket (bounded against cycles)."""
    for _ in range(16):
        if ticket.merged_into_id is None:
            return ticket
        ticket = session.get(Ticket, ticket.merged_into_id) or ticket
    return ticket


def can_work_in(user: User, queue: Queue) -> bool:
    return user.sees_all_queues or any(q.id == queue.id for q in user.queues)


def parse_tags(text: str) -> list[str]:
    """Comma- or line-separated tag names, lower-cased, each once."""
    names: list[str] = []
    for raw in re.split(r"[,\n]", text):
        name = raw.strip().lower()
        if not name:
            continue
        if not TAG_RE.match(name):
            raise TicketError(f"not a valid tag: {name[:70]!r}")
        if name not in names:
            names.append(name)
    return names


# --- Fields ------------------------------------------------------------------


def update(
    session: Session,
    ticket: Ticket,
    *,
    actor: Actor | User,
    now: datetime,
    status: str | _Unset = UNSET,
    priority: str | _Unset = UNSET,
    assignee: User | _Unset | None = UNSET,
    queue: Queue | _Unset = UNSET,
    tags: list[str] | _Unset = UNSET,
) -> bool:
    """Change any of the fields at once; True if anything changed.

    Everything is checked before anything changes. Moving to a queue the
    assignee cannot work in unassigns the ticket (unless an assignee who can
    is given too).
    """
    actor = as_actor(actor)
    _check(ticket, actor, status, priority, assignee, queue, tags)
    with operation(session, actor, now) as op:
        changes: dict[str, Change] = {}
        if isinstance(queue, Queue) and queue.id != ticket.queue_id:
            op.history(ticket, "queue", old=ticket.queue.slug, new=queue.slug)
            changes["queue"] = Change(ticket.queue.slug, queue.slug)
            ticket.queue = queue
            ticket.queue_id = queue.id
            current = ticket.assignee
            if assignee is UNSET and current is not None and not can_work_in(current, queue):
                assignee = None
        if not isinstance(assignee, _Unset) and _id(assignee) != ticket.assignee_id:
            before = ticket.assignee.email if ticket.assignee else None
            after = assignee.email if assignee else None
            op.history(ticket, "assignee", old=before or "", new=after or "")
            changes["assignee"] = Change(before, after)
            ticket.assignee = assignee
        if isinstance(status, str):
            change = apply_status(op, ticket, status)
            if change is not None:
                changes["status"] = change
        if isinstance(priority, str) and priority != ticket.priority:
            op.history(ticket, "priority", old=ticket.priority, new=priority)
            changes["priority"] = Change(ticket.priority, priority)
            ticket.priority = priority
        if isinstance(tags, list):
            change = _apply_tags(op, ticket, tags)
            if change is not None:
                changes["tags"] = change
        if changes:
            ticket.updated_at = now
            op.emit(TicketUpdated(ticket=ticket, at=now, cause=op.cause, changes=changes))
    return bool(changes)


def assign(
    session: Session,
    ticket: Ticket,
    assignee: User | None,
    *,
    actor: Actor | User,
    now: datetime,
) -> bool:
    """Assign (or, with None, unassign); the assignee must be able to work in the queue."""
    return update(session, ticket, actor=actor, now=now, assignee=assignee)


def move(
    session: Session, ticket: Ticket, queue: Queue, *, actor: Actor | User, now: datetime
) -> bool:
    return update(session, ticket, actor=actor, now=now, queue=queue)


def set_tags(
    session: Session, ticket: Ticket, names: list[str], *, actor: Actor | User, now: datetime
) -> bool:
    return update(session, ticket, actor=actor, now=now, tags=names)


def _id(user: User | None) -> int | None:
    return user.id if user is not None else None


def _check(
    ticket: Ticket,
    actor: Actor,
    status: str | _Unset,
    priority: str | _Unset,
    assignee: User | _Unset | None,
    queue: Queue | _Unset,
    tags: list[str] | _Unset,
) -> None:
    if isinstance(status, str):
        if status not in STATUSES:
            raise TicketError(f"status must be one of {', '.join(STATUSES)}")
        if ticket.merged_into_id is not None and status != ticket.status:
            raise TicketError("a merged ticket cannot change status")
    if isinstance(priority, str) and priority not in PRIORITIES:
        raise TicketError(f"priority must be one of {', '.join(PRIORITIES)}")
    target = queue if isinstance(queue, Queue) else ticket.queue
    moving = isinstance(queue, Queue) and queue.id != ticket.queue_id
    if moving and actor.user is not None and not can_work_in(actor.user, target):
        raise TicketError(f"you cannot move tickets into {target.slug}")
    if isinstance(assignee, User) and (not assignee.active or not can_work_in(assignee, target)):
        raise TicketError(f"{assignee.email} cannot work in {target.slug}")
    if isinstance(tags, list):
        for name in tags:
            if not TAG_RE.match(name):
                raise TicketError(f"not a valid tag: {name[:70]!r}")


def apply_status(op: Operation, ticket: Ticket, status: str) -> Change | None:
    """Set the status with its timestamps and history; for this package's changes only."""
    if status == ticket.status:
        return None
    before, now = ticket.status, op.now
    op.history(ticket, "status", old=before, new=status)
    ticket.status = status
    ticket.status_changed_at = now
    if status == "resolved":
        ticket.resolved_at = now
    elif status == "closed":
        ticket.closed_at = now
        ticket.resolved_at = ticket.resolved_at or now
    else:
        ticket.resolved_at = None
        ticket.closed_at = None
    ticket.updated_at = now
    return Change(before, status)


def reopens(ticket: Ticket) -> bool:
    """A customer's message wakes a ticket that waits on them or was done."""
    return ticket.status == "pending" or ticket.status in DONE_STATUSES


def _apply_tags(op: Operation, ticket: Ticket, names: list[str]) -> Change | None:
    old = [tag.name for tag in ticket.tags]
    if sorted(old) == sorted(names):
        return None
    existing = {t.name: t for t in op.session.scalars(select(Tag).where(Tag.name.in_(names)))}
    op.history(ticket, "tags", old=", ".join(old), new=", ".join(names))
    ticket.tags = [existing.get(name) or Tag(name=name) for name in names]
    return Change(tuple(sorted(old)), tuple(sorted(names)))


# --- Merging -------------------------------------------------------------------


def merge(
    session: Session, source: Ticket, target: Ticket, *, actor: Actor | User, now: datetime
) -> None:
    """Merge ``source`` into ``target``: its messages move, later mail follows (threads)."""
    if source.id == target.id:
        raise TicketError("a ticket cannot be merged into itself")
    if source.merged_into_id is not None:
        raise TicketError(f"ticket {source.number} is already merged")
    if target.merged_into_id is not None:
        raise TicketError(f"ticket {target.number} is itself merged")
    with operation(session, actor, now) as op:
        for message in list(source.messages):
            message.ticket = target
        # The source's people keep getting replies: its requester and CCs become CCs.
        known = {target.requester_id, *(link.contact_id for link in target.cc_links)}
        for contact in [source.requester, *source.ccs]:
            if contact.id not in known:
                target.cc_links.append(TicketCC(contact=contact))
                known.add(contact.id)
        op.history(source, "merge", new=f"#{target.number}")
        op.history(target, "merge", old=f"#{source.number}")
        source.merged_into_id = target.id
        closed = apply_status(op, source, "closed")
        source.updated_at = target.updated_at = now
        op.emit(TicketMerged(ticket=source, at=now, cause=op.cause, into=target))
        if closed is not None:
            changes = {"status": closed}
            op.emit(TicketUpdated(ticket=source, at=now, cause=op.cause, changes=changes))


# --- SLA escalations and deliveries ------------------------------------------


def record_sla(
    session: Session,
    ticket: Ticket,
    *,
    clock: str,
    label: str,
    level: str,
    due: datetime | None,
    target_minutes: float,
    elapsed_minutes: float,
    running: bool,
    now: datetime,
) -> None:
    """A clock passed its warning point or its target: history row ``sla_<level>``
    (old: the clock's label, new: its due time) and the event."""
    if level not in SLA_LEVELS:
        raise ValueError(f"level must be one of {SLA_LEVELS}")
    with operation(session, Actor.system("SLA"), now) as op:
        op.history(ticket, f"sla_{level}", old=label, new=due.isoformat() if due else "")
        kind = SlaWarning if level == "warning" else SlaBreached
        op.emit(
            kind(
                ticket=ticket, at=now, cause=op.cause, clock=clock, due=due,
                target_minutes=target_minutes, elapsed_minutes=elapsed_minutes, running=running,
            )
        )  # fmt: skip


def message_sent(session: Session, row: OutboxMail, *, now: datetime) -> None:
    """The relay took the row's mail; an event if it is a message of the thread
    (and anyone subscribes: the worker records every mail it sends)."""
    if not dispatcher_of(session).wants(MessageSent) or row.message_id is None:
        return
    with operation(session, Actor.system("outbox"), now) as op:
        if row.message is not None and row.ticket is not None:
            op.emit(MessageSent(ticket=row.ticket, at=now, cause=op.cause, outbox=row,
                                message=row.message))  # fmt: skip


def message_failed(session: Session, row: OutboxMail, error: str, *, now: datetime) -> None:
    """The row's mail will not go out; an event if it is a message of the thread."""
    if not dispatcher_of(session).wants(MessageFailed) or row.message_id is None:
        return
    with operation(session, Actor.system("outbox"), now) as op:
        if row.message is not None and row.ticket is not None:
            op.emit(MessageFailed(ticket=row.ticket, at=now, cause=op.cause, outbox=row,
                                  message=row.message, error=error))  # fmt: skip
