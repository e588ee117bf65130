"""Acknowledgements: the automatic "we received your request" mail for a new ticket.

A subscriber of ``TicketCreated`` (wired by ``helpdesk.subscribers``): sent
when the event asks for it (not for automated mail, not when an agent wrote
in, not when an API caller said no), at most once per requester per window,
and only queued here: an outbound message of the thread plus an outbox row
in the caller's transaction. The worker builds the MIME message when it sends.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from helpdesk.models import Contact
from helpdesk.outbound import ticket_mail
from helpdesk.outbound.outbox import enqueue
from helpdesk.settings import Settings
from helpdesk.tickets.events import Event, TicketCreated


def due(contact: Contact, *, window: timedelta, now: datetime) -> bool:
    last = contact.last_acknowledged_at
    return last is None or now - last >= window


class Acknowledgements:
    """Subscriber: acknowledge new tickets (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.window = timedelta(minutes=settings.ack_window_minutes)

    def __call__(self, session: Session, event: Event) -> None:
        if not isinstance(event, TicketCreated) or not event.acknowledge:
            return
        ticket, now = event.ticket, event.at
        contact = ticket.requester
        if not due(contact, window=self.window, now=now):
            return
        mail = ticket_mail.acknowledgement(ticket, event.message, settings=self.settings, now=now)
        contact.last_acknowledged_at = now
        enqueue(
            session, ticket, mail, now=now, flags=("acknowledgement",),
            bouncing=ticket_mail.bouncing([contact]),
        )  # fmt: skip
