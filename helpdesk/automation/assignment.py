"""Choosing an assignee among a queue's agents: round-robin, or the one with the
fewest open tickets.

The queue's agents are its active members (``queues.members``). Round-robin
remembers the last one chosen per queue in the ``counters`` table
(``round_robin:<queue id>`` holds a user id), updated in the caller's
transaction with the row locked, so two workers never hand the same turn out
twice. Fewest open counts each agent's new, open and pending tickets in any
queue (the transaction's own assignments included: it flushes first); a tie
goes round-robin among the tied.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from helpdesk.models import ACTIVE_STATUSES, Counter, Queue, Ticket, User
from helpdesk.tickets import queues


def _agents(session: Session, queue: Queue) -> list[User]:
    return sorted(queues.members(session, queue.id), key=lambda user: user.id)


def _turn(session: Session, queue: Queue) -> Counter:
    name = f"round_robin:{queue.id}"
    with session.no_autoflush:
        counter = session.get(Counter, name, with_for_update=True)
    if counter is None:
        counter = Counter(name=name, value=0)
        session.add(counter)
    return counter


def round_robin(session: Session, queue: Queue) -> User | None:
    """The queue's next agent after the last one chosen; None if it has none."""
    agents = _agents(session, queue)
    if not agents:
        return None
    counter = _turn(session, queue)
    chosen = next((a for a in agents if a.id > counter.value), agents[0])
    counter.value = chosen.id
    return chosen


def fewest_open(session: Session, queue: Queue) -> User | None:
    """The queue's agent with the fewest new, open or pending tickets."""
    agents = _agents(session, queue)
    if not agents:
        return None
    counts = dict(
        session.execute(
            select(Ticket.assignee_id, func.count())
            .where(
                Ticket.assignee_id.in_([a.id for a in agents]),
                Ticket.status.in_(ACTIVE_STATUSES),
                Ticket.merged_into_id.is_(None),
            )
            .group_by(Ticket.assignee_id)
        ).all()
    )
    counter = _turn(session, queue)
    fewest = min(counts.get(a.id, 0) for a in agents)
    tied = [a for a in agents if counts.get(a.id, 0) == fewest]
    chosen = next((a for a in tied if a.id > counter.value), tied[0])
    counter.value = chosen.id
    return chosen
