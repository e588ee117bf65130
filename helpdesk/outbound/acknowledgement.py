"""Acknowledgements: the automatic "we received your request" mail for a new ticket.

A subscriber of ``TicketCreated`` (wired by ``helpdesk.subscribers``): sent
when the event asks for it (not for automated mail, not when an agent wrote
in, not when an API caller said no), and only queued here: an outbound
message of the thread plus an outbox row in the caller's transaction. The
worker builds the MIME message when it sends.

An acknowledgement goes to whatever address the mail claims to be from, so
it must not be a way to send mail to strangers (backscatter). It never
echoes the sender's display name and cuts the subject to 100 characters
(``ticket_mail.acknowledgement``); and none is sent

- to a sender whose From is forged (``spoofed_agent``) or ambiguous
  (``ambiguous_from``), or for whom the trusted MX found SPF or DMARC failing
  (``spf_fail``, ``dmarc_fail``; see ``helpdesk.intake.senders``);
- more than once per requester per ``HELPDESK_ACK_WINDOW_MINUTES``;
- past ``HELPDESK_ACK_MAX_PER_HOUR`` in all, or
  ``HELPDESK_ACK_MAX_PER_DOMAIN_PER_HOUR`` to one recipient domain, in the
  current clock hour (``AcknowledgementCount``).

Each acknowledgement withheld is written to the ticket's history with the
reason (``conversation.acknowledgement_withheld``), so the agent sees that
the customer has heard nothing yet.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from helpdesk.mail.addresses import domain_of
from helpdesk.models import AcknowledgementCount, Contact
from helpdesk.outbound import ticket_mail
from helpdesk.outbound.outbox import enqueue
from helpdesk.settings import Settings
from helpdesk.tickets import conversation
from helpdesk.tickets.events import Event, TicketCreated

# Message flags that withhold the acknowledgement, with the reason shown on the ticket.
WITHHELD_FOR = {
    "spoofed_agent": "the sender claims an agent's address without proof",
    "ambiguous_from": "the From header is ambiguous",
    "spf_fail": "SPF failed at the trusted MX",
    "dmarc_fail": "DMARC failed at the trusted MX",
}
ALL = "*"


def due(contact: Contact, *, window: timedelta, now: datetime) -> bool:
    last = contact.last_acknowledged_at
    return last is None or now - last >= window


def _hour(now: datetime) -> datetime:
    return now.replace(minute=0, second=0, microsecond=0)


def counts(session: Session, scopes: list[str], hour: datetime) -> dict[str, int]:
    """Acknowledgements queued this hour, by scope."""
    table = AcknowledgementCount
    rows = session.execute(
        select(table.scope, table.count).where(table.hour == hour, table.scope.in_(scopes))
    )
    return {scope: count for scope, count in rows}


def count_one(session: Session, scopes: list[str], hour: datetime) -> None:
    """Add one to each scope's count for the hour (an upsert: any process may count)."""
    bind = session.get_bind()
    dialect = postgresql if bind.dialect.name == "postgresql" else sqlite
    table = AcknowledgementCount.__table__
    for scope in scopes:
        stmt = dialect.insert(table).values(scope=scope, hour=hour, count=1)
        stmt = stmt.on_conflict_do_update(
            index_elements=["scope", "hour"], set_={"count": table.c.count + 1}
        )
        session.execute(stmt)


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
        scopes = [ALL, "@" + domain_of(contact.email)]
        reason = self._withheld(session, event, contact, scopes)
        if reason:
            conversation.acknowledgement_withheld(session, ticket, reason=reason, now=now)
            return
        mail = ticket_mail.acknowledgement(ticket, event.message, settings=self.settings, now=now)
        contact.last_acknowledged_at = now
        count_one(session, scopes, _hour(now))
        enqueue(
            session, ticket, mail, now=now, flags=("acknowledgement",),
            bouncing=ticket_mail.bouncing([contact]),
        )  # fmt: skip

    def _withheld(
        self, session: Session, event: TicketCreated, contact: Contact, scopes: list[str]
    ) -> str:
        """Why no acknowledgement may go out now ("" if it may)."""
        flags = event.message.flags if event.message is not None else []
        for flag, reason in WITHHELD_FOR.items():
            if flag in (flags or []):
                return reason
        if not due(contact, window=self.window, now=event.at):
            return f"one per sender per {self.settings.ack_window_minutes} minutes"
        current = counts(session, scopes, _hour(event.at))
        if current.get(scopes[0], 0) >= self.settings.ack_max_per_hour:
            return f"{self.settings.ack_max_per_hour} acknowledgements this hour in all"
        if current.get(scopes[1], 0) >= self.settings.ack_max_per_domain_per_hour:
            limit = self.settings.ack_max_per_domain_per_hour
            return f"{limit} acknowledgements this hour to {scopes[1]}"
        return ""
