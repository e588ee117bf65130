"""One lifecycle call: its cause, its history rows, its events, and the guard.

Every public function of ``helpdesk.tickets.lifecycle`` and
``helpdesk.tickets.conversation`` runs its change inside ``operation()``:

1. the session's dispatcher is looked up (``NoDispatcher`` if none: wiring
   must attach one) and the ``Cause`` made, chained to the event being handled
   when a subscriber calls the lifecycle re-entrantly;
2. the change is applied and ``Operation.history`` writes one ``TicketEvent``
   per changed thing, with the actor's kind, label and user;
3. the events collected with ``Operation.emit`` are published to the
   subscribers once the change is complete (not if it raised).

The guard: while step 2 runs, the lifecycle may set the fields it owns on a
ticket (status, priority, assignee, queue, tags, merge, resolved/closed
times) and write history rows. ``install_guard()`` makes any other write of
those an error, everywhere in the process; the test suite installs it for the
whole run, so nothing outside the lifecycle can set ``ticket.status`` or write
history unnoticed. ``direct_writes()`` lifts it for code that recreates
tickets as they were (test data builders); the product never uses it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime

from sqlalchemy import event as orm_event
from sqlalchemy.orm import Session, object_session

from helpdesk.models import Ticket, TicketEvent, User
from helpdesk.tickets.actors import Actor, as_actor
from helpdesk.tickets.dispatch import ChainTooDeep, dispatcher_of, handling
from helpdesk.tickets.events import Cause, Event

_OPERATIONS = itertools.count(1)
_APPLYING: ContextVar[bool] = ContextVar("helpdesk_lifecycle_applying", default=False)
# The ticket fields only the lifecycle writes.
OWNED_FIELDS = (
    "status",
    "priority",
    "assignee",
    "assignee_id",
    "queue",
    "queue_id",
    "merged_into_id",
    "resolved_at",
    "closed_at",
    "channel",
    "status_changed_at",
    "last_customer_message_at",
    "last_agent_reply_at",
)


class Operation:
    """The state of one lifecycle call (see the module docstring)."""

    __slots__ = ("_dispatcher", "cause", "events", "now", "session")

    def __init__(self, session: Session, actor: Actor, now: datetime) -> None:
        self._dispatcher = dispatcher_of(session)
        self.session = session
        self.now = now
        self.cause = Cause.of(actor, next(_OPERATIONS), handling(session))
        if self.cause.depth > self._dispatcher.max_depth:
            raise ChainTooDeep(
                f"a chain of {self.cause.depth} reactions: "
                + " → ".join(f"{a.kind} {a.label}".strip() for a in self.cause.chain)
            )
        self.events: list[Event] = []

    @property
    def actor(self) -> Actor:
        return self.cause.actor

    def history(self, ticket: Ticket, kind: str, *, old: object = "", new: object = "") -> None:
        """One history row for the ticket, by this operation's actor."""
        actor = self.cause.actor
        self.session.add(
            TicketEvent(
                ticket=ticket,
                actor_id=actor.user_id,
                actor_kind=actor.kind,
                actor_label=actor.label[:200],
                kind=kind,
                old_value=str(old if old is not None else "")[:400],
                new_value=str(new if new is not None else "")[:400],
                created_at=self.now,
            )
        )

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def publish(self) -> None:
        self._dispatcher.publish(self.session, self.events)


@contextmanager
def operation(session: Session, actor: Actor | User, now: datetime) -> Iterator[Operation]:
    """Run one lifecycle change; publish its events when it completes."""
    op = Operation(session, as_actor(actor), now)
    token = _APPLYING.set(True)
    try:
        yield op
    finally:
        _APPLYING.reset(token)
    op.publish()


class DirectWrite(RuntimeError):
    """A ticket field the lifecycle owns, or a history row, was written outside it."""


@contextmanager
def direct_writes() -> Iterator[None]:
    """Allow writes the guard forbids: only for recreating tickets as they were."""
    token = _APPLYING.set(True)
    try:
        yield
    finally:
        _APPLYING.reset(token)


def _refuse(what: str) -> None:
    if not _APPLYING.get():
        raise DirectWrite(f"{what} written outside the ticket lifecycle")


def _on_set(name: str) -> Callable[[Ticket, object, object, object], None]:
    def check(target: Ticket, _value: object, _old: object, _initiator: object) -> None:
        # A flush copies a related row's new id into the foreign key (queue_id
        # from queue): that is the ORM finishing a change, not a new one.
        session = object_session(target)
        if session is not None and session._flushing:
            return
        _refuse(f"Ticket.{name}")

    return check


def _on_tags(_target: Ticket, _value: object, _initiator: object) -> None:
    _refuse("Ticket.tags")


def _on_history(_target: TicketEvent, _args: object, _kwargs: object) -> None:
    _refuse("a TicketEvent")


_installed = False


def install_guard() -> None:
    """Make writes of lifecycle-owned fields outside the lifecycle raise ``DirectWrite``."""
    global _installed
    if _installed:
        return
    for name in OWNED_FIELDS:
        orm_event.listen(getattr(Ticket, name), "set", _on_set(name))
    orm_event.listen(Ticket.tags, "append", _on_tags)
    orm_event.listen(Ticket.tags, "remove", _on_tags)
    orm_event.listen(TicketEvent, "init", _on_history)
    _installed = True
