"""Agent notifications by email, as subscribers of the ticket lifecycle.

``Notifications`` tells agents what happened on tickets, each as they chose
(``User.notify_*``): a new ticket in my queue (``TicketCreated``), a ticket
assigned to me (``TicketUpdated`` with an assignee), a customer's reply on my
ticket (``MessageReceived``). Nobody hears of their own change, and nothing
is sent for automated mail. ``EscalationMail`` sends SLA warnings
(``SlaWarning``) to the assignee, or the queue's agents when nobody is
assigned, and breaches (``SlaBreached``) to the managers as well, for clocks
still running.

Notifications are outbox rows of their ticket but not messages of its thread
(the customer never sees them). They carry our signed Message-ID, so an
agent's emailed answer to one threads back into the ticket as the agent's,
and a bounce or auto-reply to one is matched to its row (see
``helpdesk.intake.receive``). A notification that cannot be composed (a
subject holding CR/LF after a direct database edit) is logged and skipped,
never allowed to fail the change that caused it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.orm import Session

from helpdesk.mail.compose import HeaderInjection
from helpdesk.models import Ticket, User
from helpdesk.outbound import ticket_mail
from helpdesk.outbound.outbox import queue_mail, suppressed
from helpdesk.outbound.ticket_mail import TicketMail
from helpdesk.settings import Settings
from helpdesk.tickets import queues
from helpdesk.tickets.events import (
    Event,
    MessageReceived,
    SlaBreached,
    SlaWarning,
    TicketCreated,
    TicketUpdated,
)
from helpdesk.tickets.facts import facts_of

log = logging.getLogger(__name__)

# kind -> (the user's setting, the title)
KINDS = {
    "new_ticket": ("notify_new_ticket", "New ticket"),
    "assigned": ("notify_assigned", "Assigned to you"),
    "customer_reply": ("notify_customer_reply", "Customer replied"),
}
CLOCK_LABELS = {
    "first_response": "First response",
    "next_response": "Next response",
    "resolution": "Resolution",
}


def queue_id(ticket: Ticket) -> int:
    """The ticket's queue id, also for a ticket not flushed yet."""
    return ticket.queue_id if ticket.queue_id is not None else ticket.queue.id


def reachable(session: Session, users: list[User]) -> list[User]:
    """The users whose address does not bounce."""
    facts = facts_of(session)
    if facts is not None:
        skip = facts.bouncing
    else:
        with session.no_autoflush:
            skip = suppressed(session, [user.email for user in users])
    return [user for user in users if user.email not in skip]


class Notifications:
    """Subscriber: new ticket, assigned, customer replied (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __call__(self, session: Session, event: Event) -> None:
        ticket = event.ticket
        if isinstance(event, TicketCreated) and not event.automated:
            excerpt = event.message.text_body if event.message else ""
            candidates = queues.members(session, queue_id(ticket))
            self._send(session, event, "new_ticket", candidates, excerpt)
        elif isinstance(event, TicketUpdated) and "assignee" in event.changes:
            if ticket.assignee is not None:
                self._send(session, event, "assigned", [ticket.assignee], "")
        elif isinstance(event, MessageReceived) and not (event.automated or event.from_agent):
            people = [ticket.assignee] if ticket.assignee is not None else []
            self._send(session, event, "customer_reply", people, event.message.text_body)

    def _send(
        self, session: Session, event: Event, kind: str, candidates: list[User], excerpt: str
    ) -> None:
        attribute, title = KINDS[kind]
        actor_id = event.actor.user_id
        users = [
            user
            for user in candidates
            if user.active and getattr(user, attribute) and user.id != actor_id
        ]
        if not users:
            return

        def make(user: User) -> TicketMail:
            return ticket_mail.notification(
                event.ticket, user, purpose=f"notification:{kind}", title=title,
                excerpt=excerpt, settings=self.settings, now=event.at,
            )  # fmt: skip

        _queue_each(session, event.ticket, f"{kind} notification", reachable(session, users), make)


class EscalationMail:
    """Subscriber: SLA warnings and breaches to people (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __call__(self, session: Session, event: Event) -> None:
        if not isinstance(event, SlaWarning | SlaBreached) or not event.running:
            return
        breach = isinstance(event, SlaBreached)
        level = "breach" if breach else "warning"
        label = CLOCK_LABELS[event.clock]
        title = f"SLA {'breached' if breach else 'due soon'}: {label}"
        ticket = event.ticket
        due, now = event.due, event.at

        def make(user: User) -> TicketMail:
            return ticket_mail.escalation(
                ticket, user, level=level, title=title, label=label,
                target=event.target_minutes, elapsed=event.elapsed_minutes, due=due,
                settings=self.settings, now=now,
            )  # fmt: skip

        people = reachable(session, escalation_recipients(session, ticket, breach=breach))
        _queue_each(session, ticket, f"{level} escalation", people, make)
        log.info("ticket %s: %s %s", ticket.number, label.lower(), level)


def escalation_recipients(session: Session, ticket: Ticket, *, breach: bool) -> list[User]:
    """The assignee, or the queue's agents if nobody is assigned; and managers for a breach."""
    if ticket.assignee is not None and ticket.assignee.active:
        people = [ticket.assignee]
    else:
        people = queues.members(session, queue_id(ticket))
    if breach:
        people += queues.managers(session)
    unique = {user.id: user for user in people}
    return sorted(unique.values(), key=lambda u: u.email)


def _queue_each(
    session: Session,
    ticket: Ticket,
    what: str,
    users: list[User],
    make: Callable[[User], TicketMail],
) -> None:
    """Queue one mail per user; a mail that cannot be composed is logged and skipped."""
    for user in users:
        try:
            mail = make(user)
        except HeaderInjection as exc:
            # Only a direct database edit puts CR/LF into a ticket subject.
            log.warning("ticket %s: %s skipped (%s)", ticket.number, what, exc)
            return
        queue_mail(session, ticket, mail, now=mail.date)
