"""First-run data: the default queues, counters, business calendar and SLA policy.

Called by ``helpdesk init`` (and so by ``helpdesk serve``); idempotent.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from helpdesk import queues
from helpdesk.models import Queue
from helpdesk.settings import Settings
from helpdesk.sla import service as sla


def seed(session: Session, settings: Settings, *, now: datetime) -> list[Queue]:
    """Seed what is missing; returns the queues created now."""
    created = queues.seed(session, mail_domain=settings.mail_domain, now=now)
    sla.seed(session, timezone=settings.timezone, now=now)
    return created
