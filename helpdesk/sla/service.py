"""SLA service: seeding the default calendar and policy, choosing a ticket's
policy, reading its timeline from the database and storing its clocks.

``SlaRefresh`` is the subscriber that keeps every ticket's clocks current: the
lifecycle's events for anything a clock depends on (a new ticket, a message,
a reply, a change of status, priority or queue, a merge) refresh the ticket
once per lifecycle call. A new ticket's clocks are computed from the event
alone (its timeline is its first message), with the policies and calendars
of preloaded facts when the caller has them (``helpdesk.tickets.facts``): no
query, no flush. ``refresh(session, ticket, now)`` recomputes from the
database; the escalation job calls it too. The caller commits.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import inspect as sa_inspect
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from helpdesk.mail.classify import is_automated
from helpdesk.models import Message, SlaCalendar, SlaPolicy, Ticket, TicketEvent, TicketSla
from helpdesk.sla.calendar import Calendar
from helpdesk.sla.clocks import Event, SlaResult, Targets, compute
from helpdesk.tickets import events
from helpdesk.tickets.facts import facts_of

DEFAULT_CALENDAR = "Office hours"
DEFAULT_POLICY = "Default"


def seed(session: Session, *, timezone: str, now: datetime) -> None:
    """The default calendar (Mon-Fri 09:00-17:00 in ``timezone``) and policy
    (first response 4 business hours, resolution 24 business hours); idempotent."""
    calendar = session.scalars(
        select(SlaCalendar).where(SlaCalendar.name == DEFAULT_CALENDAR)
    ).one_or_none()
    if calendar is None:
        office = Calendar.office_hours(timezone)
        calendar = SlaCalendar(
            name=DEFAULT_CALENDAR,
            timezone=timezone,
            weekly=[[list(r) for r in day] for day in office.weekly],
            created_at=now,
        )
        session.add(calendar)
        session.flush()
    if session.scalars(select(SlaPolicy).where(SlaPolicy.name == DEFAULT_POLICY)).first() is None:
        session.add(
            SlaPolicy(
                name=DEFAULT_POLICY,
                position=1000,
                calendar_id=calendar.id,
                first_response_minutes=4 * 60,
                resolution_minutes=24 * 60,
                created_at=now,
            )
        )
        session.flush()


def to_calendar(row: SlaCalendar) -> Calendar:
    weekly = tuple(tuple((int(a), int(b)) for a, b in day) for day in (row.weekly or [[]] * 7))
    return Calendar(row.timezone, weekly, frozenset(h.day for h in row.holidays))


def targets_of(policy: SlaPolicy) -> Targets:
    return Targets(
        first_response=policy.first_response_minutes,
        resolution=policy.resolution_minutes,
        next_response=policy.next_response_minutes,
        first_response_business=policy.first_response_business,
        next_response_business=policy.next_response_business,
        resolution_business=policy.resolution_business,
        warn_percent=policy.warn_percent,
    )


def policy_for(session: Session, ticket: Ticket) -> SlaPolicy | None:
    """The first policy (by position) whose queue and priority match; None if none does."""
    # A ticket not flushed yet has its queue but no queue_id.
    queue_id = ticket.queue_id if ticket.queue_id is not None else ticket.queue.id
    facts = facts_of(session)
    if facts is not None:
        for policy in facts.policies:
            if policy.queue_id in (None, queue_id) and policy.priority in (None, ticket.priority):
                return policy
        return None
    stmt = (
        select(SlaPolicy)
        .where(
            or_(SlaPolicy.queue_id.is_(None), SlaPolicy.queue_id == queue_id),
            or_(SlaPolicy.priority.is_(None), SlaPolicy.priority == ticket.priority),
        )
        .order_by(SlaPolicy.position, SlaPolicy.id)
        .limit(1)
    )
    return session.scalars(stmt).first()


def timeline(session: Session, ticket: Ticket) -> list[Event]:
    """Customer messages, agent replies and status changes, oldest first.

    An agent's answer sent from their own mail client (it comes in as mail from
    the agent) counts as a reply when it was addressed to the requester.
    """
    events: list[Event] = []
    messages = session.execute(
        select(
            Message.created_at, Message.kind, Message.author_id, Message.flags,
            Message.to_addresses, Message.cc_addresses,
        ).where(Message.ticket_id == ticket.id, Message.kind.in_(("inbound", "outbound")))
    )  # fmt: skip
    requester = ticket.requester.email
    for created_at, kind, author_id, flags, to, cc in messages:
        if kind == "inbound" and author_id is None and not is_automated(flags or []):
            events.append(Event(created_at, "customer"))
        elif author_id is not None and (
            kind == "outbound" or requester in [*(to or []), *(cc or [])]
        ):
            events.append(Event(created_at, "reply"))
    changes = session.execute(
        select(TicketEvent.created_at, TicketEvent.new_value)
        .where(TicketEvent.ticket_id == ticket.id, TicketEvent.kind == "status")
        .order_by(TicketEvent.id)
    )
    events += [Event(at, "status", value) for at, value in changes]
    return sorted(events, key=lambda e: e.at)


def evaluate(
    session: Session, ticket: Ticket, *, now: datetime
) -> tuple[SlaPolicy | None, SlaResult]:
    policy = policy_for(session, ticket)
    if policy is None:
        return None, SlaResult()
    result = compute(
        targets_of(policy), calendar_of(session, policy), ticket.created_at,
        timeline(session, ticket), now=now,
    )  # fmt: skip
    return policy, result


def calendar_of(session: Session, policy: SlaPolicy) -> Calendar:
    """The policy's business calendar (made once per batch when facts are preloaded)."""
    facts = facts_of(session)
    if facts is None:
        return to_calendar(policy.calendar)
    key = ("calendar", policy.calendar_id)
    calendar = facts.derived.get(key)
    if not isinstance(calendar, Calendar):
        calendar = facts.derived[key] = to_calendar(policy.calendar)
    return calendar


def refresh(session: Session, ticket: Ticket, *, now: datetime) -> TicketSla:
    """Recompute and store the ticket's clocks."""
    return refresh_with_result(session, ticket, now=now)[0]


def refresh_with_result(
    session: Session, ticket: Ticket, *, now: datetime
) -> tuple[TicketSla, SlaResult]:
    """Recompute and store the ticket's clocks; also return the computed clocks."""
    session.flush()
    policy, result = evaluate(session, ticket, now=now)
    row = session.get(TicketSla, ticket.id)
    if row is None:
        row = TicketSla(ticket_id=ticket.id, escalations=[], paused_minutes=0.0, computed_at=now)
        session.add(row)
    _store(row, policy, result, now)
    return row, result


def refresh_new(
    session: Session, ticket: Ticket, first: Message | None, *, customer: bool, now: datetime
) -> TicketSla:
    """The clocks of a ticket just opened (not flushed yet): its timeline is its first
    message, if a customer wrote it; nothing is read from the database but the
    policy (not even that with preloaded facts)."""
    policy = policy_for(session, ticket)
    result = SlaResult()
    if policy is not None:
        line = [Event(first.created_at, "customer")] if first is not None and customer else []
        result = compute(
            targets_of(policy), calendar_of(session, policy), ticket.created_at, line, now=now
        )
    row = TicketSla(ticket=ticket, escalations=[], paused_minutes=0.0, computed_at=now)
    session.add(row)
    _store(row, policy, result, now)
    return row


def _store(row: TicketSla, policy: SlaPolicy | None, result: SlaResult, now: datetime) -> None:
    first = result.clocks.get("first_response")
    nxt = result.clocks.get("next_response")
    resolution = result.clocks.get("resolution")
    if row.policy_id != (policy.id if policy else None):
        row.escalations = []
    row.policy_id = policy.id if policy else None
    row.state = result.state
    row.breached = result.breached
    row.first_response_at = result.first_response_at
    row.first_response_due = first.due if first else None
    row.first_response_minutes = first.elapsed if first and result.first_response_at else None
    row.first_response_breached_at = first.breached_at if first else None
    row.next_response_due = nxt.due if nxt and nxt.running else None
    row.next_response_breached_at = result.next_response_breached_at
    row.next_response_answered = result.next_response_answered
    row.resolution_due = resolution.due if resolution else None
    row.resolution_minutes = resolution.elapsed if resolution and result.resolved_at else None
    row.resolution_breached_at = resolution.breached_at if resolution else None
    row.resolved_at = result.resolved_at
    row.paused_minutes = result.paused_minutes
    row.due_at = min(
        (c.due for c in result.clocks.values() if c.running and c.due is not None), default=None
    )
    # A check that came due stays due until the escalation job has made it (the
    # job then moves it on), so a change just after a due time cannot skip it.
    if row.next_check_at is None or row.next_check_at > now:
        row.next_check_at = next_check(result, now)
    if any(
        clock.breached_at is not None
        and escalation_key(name, "breach", result) not in row.escalations
        for name, clock in result.clocks.items()
    ):
        row.next_check_at = now  # a breach the escalation job has not recorded yet
    row.computed_at = now


def escalation_key(name: str, level: str, result: SlaResult) -> str:
    """How an escalation is remembered (once per clock; per cycle for next response)."""
    started = result.next_response_started
    cycle = started.isoformat() if name == "next_response" and started else ""
    return f"{name}:{level}:{cycle}"


def next_check(result: SlaResult, now: datetime) -> datetime | None:
    """The next instant a running clock reaches its warning or its target."""
    upcoming = []
    for clock in result.clocks.values():
        if not clock.running:
            continue
        upcoming += [t for t in (clock.warn_at, clock.due) if t is not None and t > now]
    return min(upcoming, default=None)


# Events after which a ticket's clocks may have changed.
_CLOCK_EVENTS = (
    events.TicketCreated,
    events.MessageReceived,
    events.ReplyQueued,
    events.TicketUpdated,
    events.TicketMerged,
)
# (operation, ids of the tickets refreshed in it) on session.info
_REFRESHED = "helpdesk.sla_refreshed"


class SlaRefresh:
    """Subscriber: recompute the clocks of the tickets an event touched, once per
    lifecycle call (its events share ``cause.operation``)."""

    event_types = _CLOCK_EVENTS

    def __call__(self, session: Session, event: events.Event) -> None:
        if isinstance(event, events.TicketUpdated) and not (
            {"status", "priority", "queue"} & event.changes.keys()
        ):
            return
        done: set[int]
        operation, done = session.info.get(_REFRESHED) or (None, set())
        if operation != event.cause.operation:
            done = set()
            session.info[_REFRESHED] = (event.cause.operation, done)
        tickets = [event.ticket]
        if isinstance(event, events.TicketMerged):
            tickets.append(event.into)
        for ticket in tickets:
            if id(ticket) in done:
                continue
            done.add(id(ticket))
            # An agent's own first mail may count as a reply: that takes the full timeline.
            # So does a new ticket already flushed (an automation rule changed it, and
            # the clocks of that change exist already).
            if (
                isinstance(event, events.TicketCreated)
                and not sa_inspect(ticket).has_identity
                and (event.message is None or event.message.author_id is None)
            ):
                customer = event.message is not None and not event.automated
                refresh_new(session, ticket, event.message, customer=customer, now=event.at)
            else:
                refresh(session, ticket, now=event.at)
