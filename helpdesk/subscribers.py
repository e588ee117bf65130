"""The standard subscribers of the ticket lifecycle, and the writing sessions that carry them.

Every session that changes tickets in the product (the gateway's intake, the
worker's jobs and outbox, the web app, the CLI) comes from a factory with a
dispatcher attached; ``standard(settings)`` is that dispatcher, built at
start-up by the wiring (``helpdesk.cli``, ``helpdesk.web.create_app``,
``mailgate.server.start_gateway``, the worker and scheduler starters, and the
test fixtures). In order:

1. ``RuleEngine`` for new tickets only: automation rules on ``ticket.created``
   move, assign or tag the ticket before anyone is told of it;
2. ``Acknowledgements``: "we received your request" for a new ticket;
3. ``Notifications``: agents hear of new tickets, assignments, customer replies;
4. ``EscalationMail``: SLA warnings and breaches to agents and managers;
5. ``SlaRefresh``: the ticket's clocks, after anything they depend on;
6. ``RuleEngine`` for the other triggers (message received, reply sent,
   ticket updated, SLA warning and breach), after the change's own effects.

Later subscribers (webhooks, satisfaction surveys, list counters) are added
with ``dispatcher.subscribe`` here, in the same place.
"""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.automation.engine import RuleEngine
from helpdesk.db import session_factory
from helpdesk.outbound.acknowledgement import Acknowledgements
from helpdesk.outbound.notifications import EscalationMail, Notifications
from helpdesk.settings import Settings
from helpdesk.sla.service import SlaRefresh
from helpdesk.tickets.dispatch import Dispatcher, attach
from helpdesk.tickets.events import (
    MessageReceived,
    SlaBreached,
    SlaWarning,
    TicketCreated,
    TicketUpdated,
)


def standard(settings: Settings) -> Dispatcher:
    """A dispatcher with the product's standard subscribers (see the module docstring)."""
    dispatcher = Dispatcher()
    rules = RuleEngine(settings)
    dispatcher.subscribe(rules, TicketCreated)
    dispatcher.subscribe(Acknowledgements(settings), TicketCreated)
    dispatcher.subscribe(Notifications(settings), TicketCreated, TicketUpdated, MessageReceived)
    dispatcher.subscribe(EscalationMail(settings), SlaWarning, SlaBreached)
    dispatcher.subscribe(SlaRefresh(), *SlaRefresh.event_types)
    dispatcher.subscribe(rules, *(t for t in RuleEngine.event_types if t is not TicketCreated))
    return dispatcher


def writing_sessions(
    engine: Engine, settings: Settings, dispatcher: Dispatcher | None = None
) -> sessionmaker[Session]:
    """Sessions for write transactions, each with ``dispatcher`` (or the standard one)."""
    return attach(session_factory(engine, write=True), dispatcher or standard(settings))
