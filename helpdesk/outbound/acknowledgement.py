"""Acknowledgements: the automatic "we received your request" mail for a new ticket.

Sent at most once per sender per window, never to automated mail, and only
queued here (an outbox row in the caller's transaction).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from helpdesk.mail.compose import Outgoing, render_for_queue, reply_subject, thread_references
from helpdesk.mail.messageid import make_message_id
from helpdesk.models import Contact, Message, OutboxMail, Ticket
from helpdesk.outbound.outbox import enqueue
from helpdesk.settings import Settings


def due(contact: Contact, *, window: timedelta, now: datetime) -> bool:
    last = contact.last_acknowledged_at
    return last is None or now - last >= window


def acknowledge(
    session: Session, ticket: Ticket, inbound: Message, *, settings: Settings, now: datetime
) -> OutboxMail | None:
    contact = ticket.requester
    if not due(contact, window=timedelta(minutes=settings.ack_window_minutes), now=now):
        return None
    context = {"ticket": ticket, "queue": ticket.queue, "requester": contact, "settings": settings}
    slug = ticket.queue.slug
    text = render_for_queue("acknowledgement.txt", slug, **context)
    html = render_for_queue("acknowledgement.html", slug, **context)
    out = Outgoing(
        from_address=ticket.queue.email_address,
        from_name=f"{settings.sender_name} ({ticket.queue.name})",
        to=[contact.email],
        subject=reply_subject(ticket.subject, settings.subject_tag_prefix, ticket.number),
        message_id=make_message_id(settings.secret_key, ticket.number, settings.mail_domain),
        text=text,
        html=html,
        in_reply_to=inbound.message_id,
        references=thread_references(inbound.references_header, inbound.message_id),
        reply_to=settings.reply_to,
        automatic=True,
        loop_marker=settings.mail_domain,
    )
    contact.last_acknowledged_at = now
    _message, row = enqueue(
        session, ticket, out, purpose="acknowledgement", now=now, flags=("acknowledgement",)
    )
    return row
