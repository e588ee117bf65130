"""First-run data: the default queues, counters, business calendar, SLA policy and
the ready-made automation rules (disabled).

Called by ``helpdesk init`` (and so by ``helpdesk serve``); idempotent.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from helpdesk.accounts import users
from helpdesk.automation import library
from helpdesk.models import Queue, User
from helpdesk.settings import Settings
from helpdesk.sla import service as sla
from helpdesk.tickets import queues


def seed(session: Session, settings: Settings, *, now: datetime) -> list[Queue]:
    """Seed what is missing; returns the queues created now."""
    created = queues.seed(session, mail_domain=settings.mail_domain, now=now)
    sla.seed(session, timezone=settings.timezone, now=now)
    library.seed(session, now=now)
    return created


def first_admin(session: Session, settings: Settings, *, now: datetime) -> tuple[str, str] | None:
    """On a database without users, create ``admin@<mail domain>`` with a random
    password and return (email, password) to show once; otherwise None."""
    if session.scalar(select(func.count()).select_from(User)):
        return None
    email = f"admin@{settings.mail_domain}"
    password = secrets.token_urlsafe(12)
    users.add_or_update(
        session, email, role="admin", queue_slugs=[q for q, _ in queues.DEFAULT_QUEUES],
        password=password, name="Administrator", now=now,
    )  # fmt: skip
    return email, password
