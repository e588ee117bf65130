"""Queues: seeding the three default queues, the address directory, and who works
in a queue."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.mail.addresses import QueueDirectory
from helpdesk.models import Counter, Queue, QueueAddress, User, user_queues
from helpdesk.tickets.facts import facts_of

DEFAULT_QUEUES = (
    ("help-desk", "Help desk"),
    ("service-desk", "Service desk"),
    ("tech-support", "Tech support"),
)


def seed(session: Session, *, mail_domain: str, now: datetime) -> list[Queue]:
    """Create the default queues and counters if missing; idempotent."""
    created = []
    for slug, name in DEFAULT_QUEUES:
        if session.scalars(select(Queue).where(Queue.slug == slug)).one_or_none():
            continue
        address = f"{slug}@{mail_domain}".lower()
        queue = Queue(slug=slug, name=name, email_address=address, created_at=now)
        queue.addresses.append(QueueAddress(address=address))
        session.add(queue)
        created.append(queue)
    if session.get(Counter, "ticket_number") is None:
        session.add(Counter(name="ticket_number", value=0))
    session.flush()
    return created


def directory(session: Session, *, mail_domain: str) -> QueueDirectory:
    rows = session.execute(select(QueueAddress.address, Queue.slug).join(Queue)).all()
    return QueueDirectory.build({address: slug for address, slug in rows}, mail_domain)


def members(session: Session, queue_id: int) -> list[User]:
    """The active users who belong to the queue, by id (preloaded facts if any)."""
    facts = facts_of(session)
    if facts is not None:
        return list(facts.members.get(queue_id, []))
    stmt = (
        select(User)
        .join(user_queues, user_queues.c.user_id == User.id)
        .where(user_queues.c.queue_id == queue_id, User.active)
        .order_by(User.id)
    )
    # No autoflush: pending tickets and messages cannot change who is in a queue,
    # and flushing them here cost about a tenth of intake's time (bench/intake.py).
    with session.no_autoflush:
        return list(session.scalars(stmt))


def managers(session: Session) -> list[User]:
    """The active managers (preloaded facts if any)."""
    facts = facts_of(session)
    if facts is not None:
        return list(facts.managers)
    with session.no_autoflush:
        return list(session.scalars(select(User).where(User.role == "manager", User.active)))


def by_slug(session: Session, slug: str) -> Queue | None:
    return session.scalars(select(Queue).where(Queue.slug == slug)).one_or_none()


class QueueError(ValueError):
    """A queue change is not valid; the message is safe to show."""


POLICIES = ("reopen", "new_ticket")


def update(
    session: Session,
    queue: Queue,
    *,
    name: str,
    email_address: str,
    closed_reply_policy: str,
    extra_addresses: list[str],
) -> None:
    """Rename a queue, set its sending address, policy and the addresses routed to it."""
    from helpdesk.mail.addresses import normalise_address

    if not name.strip():
        raise QueueError("a queue needs a name")
    if closed_reply_policy not in POLICIES:
        raise QueueError(f"policy must be one of {', '.join(POLICIES)}")
    addresses = [normalise_address(a) for a in [email_address, *extra_addresses] if a.strip()]
    for address in addresses:
        local, _, domain = address.partition("@")
        if not local or "." not in domain:
            raise QueueError(f"not an email address: {address}")
    taken = session.scalars(
        select(QueueAddress).where(
            QueueAddress.address.in_(addresses), QueueAddress.queue_id != queue.id
        )
    ).first()
    if taken is not None:
        raise QueueError(f"{taken.address} already routes to another queue")
    queue.name = name.strip()[:200]
    queue.email_address = addresses[0]
    queue.closed_reply_policy = closed_reply_policy
    wanted = list(dict.fromkeys(addresses))
    queue.addresses = [a for a in queue.addresses if a.address in wanted]
    have = {a.address for a in queue.addresses}
    queue.addresses.extend(QueueAddress(address=a) for a in wanted if a not in have)
