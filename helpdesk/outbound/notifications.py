"""Agent notifications by email: a new ticket in my queue, a ticket assigned to me,
a customer reply on my ticket. Each user chooses which (``User.notify_*``).

Notifications are outbox rows of their ticket but not messages of its thread
(the customer never sees them). They carry our signed Message-ID, so an
agent's emailed answer to one threads back into the ticket as the agent's.
A notification that cannot be composed is logged and skipped, never allowed
to fail the change that caused it (such as a customer's reply arriving).
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.mail.compose import HeaderInjection, Outgoing, build, render, reply_subject
from helpdesk.mail.messageid import make_message_id
from helpdesk.models import OutboxMail, Ticket, User, user_queues
from helpdesk.outbound.outbox import queue_mail, suppressed
from helpdesk.settings import Settings

log = logging.getLogger(__name__)

EVENTS = {
    "new_ticket": ("notify_new_ticket", "New ticket"),
    "assigned": ("notify_assigned", "Assigned to you"),
    "customer_reply": ("notify_customer_reply", "Customer replied"),
}


def recipients(session: Session, ticket: Ticket, event: str, *, actor_id: int | None) -> list[User]:
    """Who wants this event: queue members for new tickets, the assignee otherwise."""
    attribute, _title = EVENTS[event]
    if event == "new_ticket":
        stmt = (
            select(User)
            .join(user_queues, user_queues.c.user_id == User.id)
            .where(user_queues.c.queue_id == ticket.queue_id, User.active)
            .order_by(User.id)
        )
        # No autoflush: intake's pending rows cannot change who is in a queue,
        # and flushing them here cost about a tenth of intake's time (bench/intake.py).
        with session.no_autoflush:
            candidates = list(session.scalars(stmt))
    else:
        candidates = [ticket.assignee] if ticket.assignee is not None else []
    return [
        user
        for user in candidates
        if user.active and getattr(user, attribute) and user.id != actor_id
    ]


def notify(
    session: Session,
    ticket: Ticket,
    event: str,
    *,
    settings: Settings,
    now: datetime,
    actor_id: int | None = None,
    excerpt: str = "",
) -> list[OutboxMail]:
    """Queue one notification per interested agent."""
    _attribute, title = EVENTS[event]
    users = recipients(session, ticket, event, actor_id=actor_id)
    skip = suppressed(session, [user.email for user in users])
    rows = []
    for user in users:
        if user.email in skip:
            continue
        try:
            out = Outgoing(
                from_address=ticket.queue.email_address,
                from_name=f"{settings.sender_name} ({ticket.queue.name})",
                to=[user.email],
                subject=f"{title}: "
                + reply_subject(ticket.subject, settings.subject_tag_prefix, ticket.number)[4:],
                message_id=make_message_id(
                    settings.secret_key, ticket.number, settings.mail_domain
                ),
                text=render(
                    "email/notification.txt",
                    ticket=ticket,
                    user=user,
                    title=title,
                    excerpt=excerpt[:2000],
                    settings=settings,
                ),
                automatic=True,
                loop_marker=settings.mail_domain,
                date=now,
            )
            mime = build(out)
        except HeaderInjection as exc:
            # Only a direct database edit puts CR/LF into a ticket subject.
            log.warning("ticket %s: %s notification skipped (%s)", ticket.number, event, exc)
            continue
        row = queue_mail(session, ticket, mime, out, purpose=f"notification:{event}", now=now)
        rows.append(row)
    return rows
