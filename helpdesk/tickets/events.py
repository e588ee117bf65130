"""Domain events: what the ticket lifecycle says happened, typed.

The lifecycle (``helpdesk.tickets.lifecycle`` and ``conversation``) emits
these after it has applied a change and written its history, inside the
caller's transaction; ``helpdesk.tickets.dispatch`` hands them to the
subscribers. Each event holds the ticket (an ORM object of the caller's
session), the instant, and its ``cause``: who acted and through which chain
of reactions, so that a subscriber that changes the ticket in turn (an
automation rule) can bound the depth and refuse to act twice in one chain.

``name`` is the stable public name of the event type (webhooks, rules, logs):

============================  =====================  ===============================
event                         name                   emitted when
============================  =====================  ===============================
``TicketCreated``             ``ticket.created``     a ticket is opened (any channel)
``MessageReceived``           ``message.received``   mail (or a portal message) lands
                                                     on an existing ticket
``ReplyQueued``               ``reply.queued``       an agent's reply is in the outbox
``NoteAdded``                 ``note.created``       an internal note is added
``TicketUpdated``             ``ticket.updated``     status, priority, assignee,
                                                     queue or tags change
``TicketMerged``              ``ticket.merged``      a ticket is merged into another
``SlaWarning``                ``sla.warning``        a clock passes its warning point
``SlaBreached``               ``sla.breached``       a clock passes its target
``MessageSent``               ``message.sent``       the relay took a thread message
``MessageFailed``             ``message.failed``     a thread message will not go out
============================  =====================  ===============================

Events are cheap frozen dataclasses (slots, no copies of rows): build one
per change, never query to make one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from helpdesk.models import Message, OutboxMail, Ticket
from helpdesk.tickets.actors import Actor

CHANNELS = ("mail", "web", "phone", "api", "portal")


@dataclass(frozen=True, slots=True)
class Cause:
    """Why an event happened: the actor, and the chain of reactions that led here.

    ``operation`` numbers the lifecycle call that emitted the event (events of
    one call share it). ``parent`` is the event whose subscriber made this
    change, None for a change made directly (by a person, a script, a job);
    ``depth`` counts the reactions (0 for a direct change); ``chain`` lists
    the actors from the direct change to this one, oldest first.
    """

    actor: Actor
    operation: int
    parent: Event | None = None
    depth: int = 0
    chain: tuple[Actor, ...] = ()

    @classmethod
    def of(cls, actor: Actor, operation: int, parent: Event | None) -> Cause:
        if parent is None:
            return cls(actor, operation, None, 0, (actor,))
        up = parent.cause
        return cls(actor, operation, parent, up.depth + 1, (*up.chain, actor))


@dataclass(frozen=True, slots=True)
class Change:
    """One field's change: the value before and after (slugs, addresses, names)."""

    before: object
    after: object


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Common to all events: the ticket, when, and why."""

    name: ClassVar[str] = "event"

    ticket: Ticket
    at: datetime
    cause: Cause

    @property
    def actor(self) -> Actor:
        return self.cause.actor


@dataclass(frozen=True, slots=True, kw_only=True)
class TicketCreated(Event):
    """A new ticket; ``message`` is its first message (None if it has none).

    ``acknowledge`` is False when the requester must not get the automatic
    acknowledgement (automated mail, an agent writing in, the API asked so).
    """

    name: ClassVar[str] = "ticket.created"

    channel: str
    message: Message | None = None
    automated: bool = False
    acknowledge: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageReceived(Event):
    """A message from outside landed on an existing ticket.

    ``automated`` for auto-replies, bounces and bulk mail; ``from_agent`` for an
    agent writing from their own mail client.
    """

    name: ClassVar[str] = "message.received"

    message: Message
    channel: str = "mail"
    automated: bool = False
    from_agent: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyQueued(Event):
    """An agent's reply, recorded on the ticket and queued (``outbox`` is None
    when every recipient is suppressed)."""

    name: ClassVar[str] = "reply.queued"

    message: Message
    outbox: OutboxMail | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NoteAdded(Event):
    name: ClassVar[str] = "note.created"

    message: Message


@dataclass(frozen=True, slots=True, kw_only=True)
class TicketUpdated(Event):
    """Fields of the ticket changed: ``changes`` maps status, priority, assignee
    (an address or None), queue (a slug) or tags (a sorted tuple) to a Change."""

    name: ClassVar[str] = "ticket.updated"

    changes: Mapping[str, Change] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class TicketMerged(Event):
    """``ticket`` was merged into ``into``: its messages and people moved there."""

    name: ClassVar[str] = "ticket.merged"

    into: Ticket


@dataclass(frozen=True, slots=True, kw_only=True)
class SlaWarning(Event):
    """A clock (first_response, next_response, resolution) nears its target.

    ``target_minutes`` and ``elapsed_minutes`` are in the policy's time
    (business minutes when the policy counts them). ``running`` is False when
    the clock had already stopped (nobody to chase).
    """

    name: ClassVar[str] = "sla.warning"

    clock: str
    due: datetime | None
    target_minutes: float = 0.0
    elapsed_minutes: float = 0.0
    running: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class SlaBreached(Event):
    """A clock passed its target (fields as for ``SlaWarning``)."""

    name: ClassVar[str] = "sla.breached"

    clock: str
    due: datetime | None
    target_minutes: float = 0.0
    elapsed_minutes: float = 0.0
    running: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageSent(Event):
    """The relay accepted a message of the thread (an acknowledgement, a reply)."""

    name: ClassVar[str] = "message.sent"

    outbox: OutboxMail
    message: Message


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageFailed(Event):
    """A message of the thread will not go out: refused, or retried too often."""

    name: ClassVar[str] = "message.failed"

    outbox: OutboxMail
    message: Message
    error: str = ""
