"""What a rule's conditions look at: the ticket and the event, as plain values.

A ``Situation`` is made from a lifecycle event (``from_event``), from a
ticket alone for time rules and previews (``from_ticket``), or from a journal
row (``from_facts``: the same values stored when the event happened), so that
one evaluator (``helpdesk.automation.conditions``) serves the engine, the
worker's time rules and the preview alike. Reading it costs no query, except
the body of a message, which is read only when a condition asks for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.automation.calendars import hours_between, is_working, queue_calendars
from helpdesk.mail.classify import AUTOMATED_FLAGS
from helpdesk.models import Message, Ticket
from helpdesk.sla.calendar import Calendar
from helpdesk.tickets import events

# trigger -> event type
TRIGGER_EVENTS: dict[str, type[events.Event]] = {
    "ticket.created": events.TicketCreated,
    "message.received": events.MessageReceived,
    "reply.sent": events.ReplyQueued,
    "ticket.updated": events.TicketUpdated,
    "sla.warning": events.SlaWarning,
    "sla.breached": events.SlaBreached,
}
# time field -> the ticket's timestamp it counts from
ANCHORS = {
    "hours_since_created": "created_at",
    "hours_since_customer_message": "last_customer_message_at",
    "hours_since_agent_reply": "last_agent_reply_at",
    "hours_in_status": "status_changed_at",
}


def trigger_of(event: events.Event) -> str | None:
    """The rule trigger an event fires, if any: ``message.received`` is mail from
    outside only (an agent writing from their mail client is not one)."""
    if isinstance(event, events.MessageReceived) and event.from_agent:
        return None
    for trigger, kind in TRIGGER_EVENTS.items():
        if type(event) is kind:
            return trigger
    return None


@dataclass
class Situation:
    """The values conditions test (see ``helpdesk.automation.schema.FIELDS``)."""

    event: str
    at: datetime
    queue_id: int
    queue: str
    status: str
    priority: str
    assignee: str | None
    tags: frozenset[str]
    requester: str
    subject: str
    channel: str
    calendar: Calendar
    automated: bool = False
    flags: frozenset[str] = frozenset()
    changed: frozenset[str] = frozenset()
    sla_clock: str = ""
    anchors: dict[str, datetime | None] = field(default_factory=dict)
    message_id: int | None = None
    load_body: Callable[[], str] = field(default=lambda: "", repr=False)
    _body: str | None = field(default=None, repr=False)

    @property
    def requester_domain(self) -> str:
        return self.requester.rpartition("@")[2]

    @property
    def body(self) -> str:
        if self._body is None:
            self._body = self.load_body()
        return self._body

    @property
    def business_hours(self) -> bool:
        return is_working(self.calendar, self.at)

    def hours_since(self, time_field: str) -> float | None:
        """Business hours from the field's moment (see ``ANCHORS``) to now."""
        return hours_between(self.calendar, self.anchors.get(ANCHORS[time_field]), self.at)

    def facts(self) -> dict[str, Any]:
        """The values as JSON, for the journal (``from_facts`` reads them back)."""
        return {
            "queue_id": self.queue_id,
            "queue": self.queue,
            "status": self.status,
            "priority": self.priority,
            "assignee": self.assignee,
            "tags": sorted(self.tags),
            "requester": self.requester,
            "subject": self.subject[:500],
            "channel": self.channel,
            "automated": self.automated,
            "flags": sorted(self.flags),
            "changed": sorted(self.changed),
            "sla_clock": self.sla_clock,
            "anchors": {k: v.isoformat() if v else None for k, v in self.anchors.items()},
            "message_id": self.message_id,
        }


def _anchors(ticket: Ticket) -> dict[str, datetime | None]:
    return {
        "created_at": ticket.created_at,
        "last_customer_message_at": ticket.last_customer_message_at,
        "last_agent_reply_at": ticket.last_agent_reply_at,
        "status_changed_at": ticket.status_changed_at or ticket.created_at,
    }


def _queue_id(ticket: Ticket) -> int:
    return ticket.queue_id if ticket.queue_id is not None else ticket.queue.id


def _latest_inbound(session: Session, ticket: Ticket) -> Callable[[], str]:
    def load() -> str:
        if ticket.id is None:
            return ""
        with session.no_autoflush:
            text = session.scalars(
                select(Message.text_body)
                .where(Message.ticket_id == ticket.id, Message.kind == "inbound")
                .order_by(Message.id.desc())
                .limit(1)
            ).first()
        return text or ""

    return load


def from_ticket(
    session: Session, ticket: Ticket, *, event: str, at: datetime, **given: Any
) -> Situation:
    """The ticket as it is now (time rules, previews); the body is its newest
    message from outside. ``given`` sets what an event says (see ``from_event``)."""
    queue_id = _queue_id(ticket)
    values: dict[str, Any] = {
        "queue": ticket.queue.slug,
        "status": ticket.status,
        "priority": ticket.priority,
        "assignee": ticket.assignee.email if ticket.assignee is not None else None,
        "tags": frozenset(tag.name for tag in ticket.tags),
        "requester": ticket.requester.email,
        "subject": ticket.subject,
        "channel": ticket.channel or "mail",
        "anchors": _anchors(ticket),
        "load_body": _latest_inbound(session, ticket),
    }
    values.update(given)
    return Situation(
        event=event, at=at, queue_id=queue_id, calendar=queue_calendars(session).of(queue_id),
        **values,
    )  # fmt: skip


def from_event(session: Session, event: events.Event, trigger: str) -> Situation:
    """The ticket as it is while the event is handled, and what the event says."""
    given: dict[str, Any] = {}
    message: Message | None = getattr(event, "message", None)
    if message is not None:
        given["message_id"] = message.id
        given["load_body"] = lambda: message.text_body or ""
        given["flags"] = frozenset(message.flags or ()) & AUTOMATED_FLAGS
    if isinstance(event, events.TicketCreated | events.MessageReceived):
        given["automated"] = event.automated
        given["channel"] = event.channel
    elif isinstance(event, events.TicketUpdated):
        given["changed"] = frozenset(event.changes)
    elif isinstance(event, events.SlaWarning | events.SlaBreached):
        given["sla_clock"] = event.clock
    with session.no_autoflush:
        return from_ticket(session, event.ticket, event=trigger, at=event.at, **given)


def from_facts(
    facts: dict[str, Any], *, event: str, at: datetime, calendar: Calendar, body: str = ""
) -> Situation:
    """A journal row's values back as a Situation (the body is given by the caller)."""
    anchors = {
        key: datetime.fromisoformat(value) if value else None
        for key, value in (facts.get("anchors") or {}).items()
    }
    return Situation(
        event=event,
        at=at,
        queue_id=int(facts.get("queue_id") or 0),
        queue=str(facts.get("queue", "")),
        status=str(facts.get("status", "")),
        priority=str(facts.get("priority", "")),
        assignee=facts.get("assignee"),
        tags=frozenset(facts.get("tags") or ()),
        requester=str(facts.get("requester", "")),
        subject=str(facts.get("subject", "")),
        channel=str(facts.get("channel", "mail")),
        calendar=calendar,
        automated=bool(facts.get("automated")),
        flags=frozenset(facts.get("flags") or ()),
        changed=frozenset(facts.get("changed") or ()),
        sla_clock=str(facts.get("sla_clock", "")),
        anchors=anchors,
        message_id=facts.get("message_id"),
        _body=body,
    )
