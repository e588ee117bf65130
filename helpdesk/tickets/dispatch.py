"""The dispatcher: hands the lifecycle's events to subscribers, in the same transaction.

Wiring (``helpdesk.subscribers.standard``, called by ``helpdesk.cli``, the web
app factory, the gateway, the worker and the test fixtures) builds one
``Dispatcher``, subscribes handlers to event types, and attaches it to the
session factory that makes writing sessions::

    dispatcher = Dispatcher()
    dispatcher.subscribe(SlaRefresh(), TicketCreated, TicketUpdated, ...)
    sessions = attach(session_factory(engine, write=True), dispatcher)

Nothing subscribes by being imported. A lifecycle call on a session without a
dispatcher raises ``NoDispatcher``: a writer cannot forget the standard
subscribers (SLA clocks, notifications) silently.

Semantics:

- A subscriber is ``handler(session, event)``. Handlers run in the order they
  were subscribed, synchronously, in the caller's transaction, after the
  change is applied and its history written.
- A handler may call the lifecycle again (an automation rule setting the
  priority). That change is a new operation whose events carry a ``Cause``
  with ``parent`` = the event being handled, ``depth`` + 1 and the actor
  appended to ``chain``; its events are dispatched at once, before the
  remaining handlers of the outer event. A chain deeper than ``max_depth``
  raises ``ChainTooDeep`` (a backstop; rules bound themselves lower).
- An exception in a handler propagates: the caller's transaction (or
  savepoint) rolls back, change and all. A handler that must never fail the
  change (a notification that cannot be composed) catches its own errors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from sqlalchemy.orm import Session, sessionmaker

from helpdesk.tickets.events import Event

Subscriber = Callable[[Session, Event], None]
_KEY = "helpdesk.dispatcher"
_STACK = "helpdesk.dispatching"
T = TypeVar("T", Session, sessionmaker[Session])


class NoDispatcher(RuntimeError):
    """A lifecycle call on a session that has no dispatcher attached (a wiring bug)."""


class ChainTooDeep(RuntimeError):
    """Reactions to reactions went deeper than the dispatcher allows."""


class Dispatcher:
    """Subscribers by event type, and the delivery of events to them."""

    def __init__(self, *, max_depth: int = 10) -> None:
        self.max_depth = max_depth
        self._subscriptions: list[tuple[Subscriber, tuple[type[Event], ...]]] = []
        self._handlers: dict[type[Event], tuple[Subscriber, ...]] = {}

    def subscribe(self, handler: Subscriber, *event_types: type[Event]) -> None:
        """Call ``handler`` for events of these types (and their subclasses); all if none."""
        self._subscriptions.append((handler, event_types or (Event,)))
        self._handlers.clear()

    def handlers(self, event_type: type[Event]) -> tuple[Subscriber, ...]:
        found = self._handlers.get(event_type)
        if found is None:
            found = tuple(
                handler for handler, types in self._subscriptions if issubclass(event_type, types)
            )
            self._handlers[event_type] = found
        return found

    def wants(self, event_type: type[Event]) -> bool:
        """Does anyone subscribe to this type? (Lets a caller skip loading rows for
        an event nobody would read.)"""
        return bool(self.handlers(event_type))

    def publish(self, session: Session, events: Iterable[Event]) -> None:
        """Deliver each event to its handlers, in order; see the module docstring."""
        stack: list[Event] = session.info.setdefault(_STACK, [])
        for event in events:
            handlers = self.handlers(type(event))
            if not handlers:
                continue
            stack.append(event)
            try:
                for handler in handlers:
                    handler(session, event)
            finally:
                stack.pop()


def attach(target: T, dispatcher: Dispatcher) -> T:
    """Give a session, or every session a factory makes, this dispatcher."""
    if isinstance(target, sessionmaker):
        info = dict(target.kw.get("info") or {})
        info[_KEY] = dispatcher
        target.configure(info=info)
    else:
        target.info[_KEY] = dispatcher
    return target


def dispatcher_of(session: Session) -> Dispatcher:
    dispatcher: Dispatcher | None = session.info.get(_KEY)
    if dispatcher is None:
        raise NoDispatcher(
            "this session has no event dispatcher: make writing sessions with "
            "helpdesk.subscribers.writing_sessions() or attach() one"
        )
    return dispatcher


def handling(session: Session) -> Event | None:
    """The event whose handlers are running now on this session, if any."""
    stack = session.info.get(_STACK)
    return stack[-1] if stack else None
