"""Facts a batch of changes may load once instead of once per ticket.

Intake applies mail in batches; every new ticket needs its queue's agents
(notifications), the SLA policies and calendars, and who among the agents
bounces. ``preload(session)`` reads them all in a few queries and keeps them
on the session (``session.info``) until ``forget(session)`` or the session's
end; the functions that need them (``queues.members``, ``sla.service``'s
policy choice, notification recipients) use them when present and query
otherwise. Only a caller that knows nothing changes these rows during its
transaction should preload (the intake applier does; web requests do not).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from helpdesk.models import Contact, SlaCalendar, SlaPolicy, User, user_queues

_KEY = "helpdesk.facts"


@dataclass
class Facts:
    """Slow-changing rows, loaded once (see the module docstring)."""

    # active users by address
    users: dict[str, User] = field(default_factory=dict)
    # queue id -> its active members, by user id
    members: dict[int, list[User]] = field(default_factory=dict)
    managers: list[User] = field(default_factory=list)
    # every policy, by position then id (the first match wins)
    policies: list[SlaPolicy] = field(default_factory=list)
    # addresses of active users that bounce (notifications skip them)
    bouncing: set[str] = field(default_factory=set)
    # derived values callers may cache here (e.g. business calendars by id)
    derived: dict[object, object] = field(default_factory=dict)


def preload(session: Session) -> Facts:
    """Load the facts and keep them on the session."""
    users = list(session.scalars(select(User).where(User.active).order_by(User.id)))
    by_id = {user.id: user for user in users}
    members: dict[int, list[User]] = {}
    for user_id, queue_id in session.execute(
        select(user_queues.c.user_id, user_queues.c.queue_id).order_by(user_queues.c.user_id)
    ):
        if user_id in by_id:
            members.setdefault(queue_id, []).append(by_id[user_id])
    policies = list(
        session.scalars(
            select(SlaPolicy)
            .options(selectinload(SlaPolicy.calendar).selectinload(SlaCalendar.holidays))
            .order_by(SlaPolicy.position, SlaPolicy.id)
        )
    )
    emails = [user.email for user in users]
    bouncing = set(
        session.scalars(
            select(Contact.email).where(
                Contact.email.in_(emails), Contact.bouncing_since.is_not(None)
            )
        )
    ) if emails else set()  # fmt: skip
    facts = Facts(
        users={user.email: user for user in users},
        members=members,
        managers=[user for user in users if user.role == "manager"],
        policies=policies,
        bouncing=bouncing,
    )
    session.info[_KEY] = facts
    return facts


def facts_of(session: Session) -> Facts | None:
    return session.info.get(_KEY)
