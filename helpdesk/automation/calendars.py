"""Business time for rules: each queue's calendar, "is it business hours now",
and the instant N business hours before now (what set-based time rules compare
a ticket's timestamps with).

A queue's calendar is the calendar of the SLA policy that would apply to a
ticket of that queue at any priority: the first policy (by position) for that
queue or for every queue with no priority set, else the first for that queue or
every queue at all; a desk without policies counts every minute (24x7).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from helpdesk.models import SlaCalendar, SlaPolicy
from helpdesk.sla.calendar import Calendar, business_minutes, working_intervals
from helpdesk.sla.service import to_calendar
from helpdesk.tickets.facts import facts_of

_KEY = "helpdesk.rule_calendars"
WINDOW = timedelta(days=14)
HORIZON = timedelta(days=3660)


class QueueCalendars:
    """Calendars by queue id, read once (per transaction, or per batch with facts)."""

    def __init__(self, policies: list[SlaPolicy]) -> None:
        self._policies = policies
        self._by_calendar: dict[int, Calendar] = {}
        self._by_queue: dict[int, Calendar] = {}

    def of(self, queue_id: int) -> Calendar:
        found = self._by_queue.get(queue_id)
        if found is None:
            found = self._by_queue[queue_id] = self._choose(queue_id)
        return found

    def _choose(self, queue_id: int) -> Calendar:
        fitting = [p for p in self._policies if p.queue_id in (None, queue_id)]
        chosen = next((p for p in fitting if p.priority is None), None) or next(iter(fitting), None)
        if chosen is None:
            return Calendar.always()
        calendar = self._by_calendar.get(chosen.calendar_id)
        if calendar is None:
            calendar = self._by_calendar[chosen.calendar_id] = to_calendar(chosen.calendar)
        return calendar


def queue_calendars(session: Session) -> QueueCalendars:
    """The calendars of this transaction (preloaded facts' policies when present)."""
    cached = session.info.get(_KEY)
    transaction = session.get_transaction()
    if cached is not None and cached[0] is transaction:
        return cached[1]
    facts = facts_of(session)
    if facts is not None:
        policies = facts.policies
    else:
        with session.no_autoflush:
            policies = list(
                session.scalars(
                    select(SlaPolicy)
                    .options(selectinload(SlaPolicy.calendar).selectinload(SlaCalendar.holidays))
                    .order_by(SlaPolicy.position, SlaPolicy.id)
                )
            )
    calendars = QueueCalendars(policies)
    session.info[_KEY] = (transaction, calendars)
    return calendars


def is_working(calendar: Calendar, at: datetime) -> bool:
    """Is ``at`` within the calendar's working time?"""
    return bool(working_intervals(calendar, at, at + timedelta(seconds=1)))


def hours_between(calendar: Calendar, start: datetime | None, end: datetime) -> float | None:
    """Business hours from ``start`` to ``end`` (None when there is no start)."""
    if start is None:
        return None
    return business_minutes(calendar, start, end) / 60


def hours_before(calendar: Calendar, end: datetime, hours: float) -> datetime | None:
    """The latest instant ``t`` with ``hours`` business hours in [t, end).

    So a moment lies at least ``hours`` business hours before ``end`` exactly
    when it is at or before this instant. None when the calendar has that
    much working time nowhere within ten years back.
    """
    remaining = timedelta(hours=hours)
    if remaining <= timedelta(0):
        return end
    cursor, limit = end, end - HORIZON
    while cursor > limit:
        start = max(cursor - WINDOW, limit)
        for a, b in reversed(working_intervals(calendar, start, cursor)):
            if remaining <= b - a:
                return b - remaining
            remaining -= b - a
        cursor = start
    return None
