"""Queues: seeding the three default queues and reading the address directory."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.mail.addresses import QueueDirectory
from helpdesk.models import Counter, Queue, QueueAddress

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


def by_slug(session: Session, slug: str) -> Queue | None:
    return session.scalars(select(Queue).where(Queue.slug == slug)).one_or_none()
