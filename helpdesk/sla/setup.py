"""Setting up SLAs: business calendars (working hours, holidays) and policies,
as edited on the admin pages. Changes mark open tickets for re-evaluation by
the escalation job."""

from __future__ import annotations

import re
from datetime import date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from helpdesk.db import rowcount
from helpdesk.models import (
    ACTIVE_STATUSES,
    PRIORITIES,
    Queue,
    SlaCalendar,
    SlaHoliday,
    SlaPolicy,
    Ticket,
    TicketSla,
)
from helpdesk.sla.calendar import DAY_MINUTES, Calendar

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
RANGE_RE = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


class SetupError(ValueError):
    """A calendar or policy value is not valid; the message is safe to show."""


def _clock(h: str, m: str) -> int:
    minutes = int(h) * 60 + int(m)
    if int(m) > 59 or minutes > DAY_MINUTES:
        raise SetupError(f"not a time of day: {h}:{m}")
    return minutes


def parse_weekly(text: str) -> list[list[list[int]]]:
    """``mon 09:00-12:00 13:00-17:00`` per line; ``fri 22:00-06:00`` runs past
    midnight; ``24x7`` alone means every day, all day."""
    if text.strip().lower() == "24x7":
        return [[[0, DAY_MINUTES]] for _ in DAYS]
    weekly: list[list[list[int]]] = [[] for _ in DAYS]
    for line in text.splitlines():
        words = line.replace(",", " ").split()
        if not words:
            continue
        day = words[0].lower()[:3]
        if day not in DAYS:
            raise SetupError(f"a line must start with a weekday (mon ... sun), got {words[0]!r}")
        for word in words[1:]:
            match = RANGE_RE.match(word)
            if not match:
                raise SetupError(f"not a range like 09:00-17:00: {word!r}")
            start, end = _clock(*match.groups()[:2]), _clock(*match.groups()[2:])
            if start >= DAY_MINUTES:
                raise SetupError(f"a range cannot start at 24:00: {word!r}")
            if end <= start:
                end += DAY_MINUTES  # past midnight
            weekly[DAYS.index(day)].append([start, end])
    Calendar("UTC", tuple(tuple((a, b) for a, b in day) for day in weekly))  # validates
    return weekly


def format_weekly(weekly: list[list[list[int]]]) -> str:
    lines = []
    for name, ranges in zip(DAYS, weekly or [[]] * 7, strict=False):
        if not ranges:
            continue
        parts = [
            f"{a // 60:02d}:{a % 60:02d}-{(b % DAY_MINUTES) // 60:02d}:{b % 60:02d}"
            if b != DAY_MINUTES
            else f"{a // 60:02d}:{a % 60:02d}-24:00"
            for a, b in ranges
        ]
        lines.append(f"{name} {' '.join(parts)}")
    return "\n".join(lines)


def parse_holidays(text: str) -> list[tuple[date, str]]:
    """``2026-12-24 Christmas Eve`` per line."""
    found = []
    for line in text.splitlines():
        if not line.strip():
            continue
        day, _, name = line.strip().partition(" ")
        try:
            found.append((date.fromisoformat(day), name.strip()))
        except ValueError as exc:
            raise SetupError(f"not a date like 2026-12-24: {day!r}") from exc
    return found


def save_calendar(
    session: Session,
    calendar: SlaCalendar | None,
    *,
    name: str,
    timezone: str,
    weekly_text: str,
    holidays_text: str,
    now: datetime,
) -> SlaCalendar:
    if not name.strip():
        raise SetupError("a calendar needs a name")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise SetupError(f"unknown time zone: {timezone!r}") from exc
    weekly = parse_weekly(weekly_text)
    days = parse_holidays(holidays_text)
    if calendar is None:
        calendar = SlaCalendar(created_at=now)
        session.add(calendar)
    calendar.name = name.strip()[:100]
    calendar.timezone = timezone
    calendar.weekly = weekly
    wanted = {day: label for day, label in days}
    calendar.holidays = [h for h in calendar.holidays if h.day in wanted]
    have = {h.day for h in calendar.holidays}
    calendar.holidays.extend(
        SlaHoliday(day=day, name=label[:200])
        for day, label in sorted(wanted.items())
        if day not in have
    )
    session.flush()
    mark_for_reevaluation(session, now=now)
    return calendar


def save_policy(
    session: Session,
    policy: SlaPolicy | None,
    *,
    name: str,
    position: int,
    queue: Queue | None,
    priority: str | None,
    calendar: SlaCalendar,
    first_response_minutes: int | None,
    first_response_business: bool,
    next_response_minutes: int | None,
    next_response_business: bool,
    resolution_minutes: int | None,
    resolution_business: bool,
    warn_percent: int,
    now: datetime,
) -> SlaPolicy:
    if not name.strip():
        raise SetupError("a policy needs a name")
    if priority is not None and priority not in PRIORITIES:
        raise SetupError(f"priority must be one of {', '.join(PRIORITIES)}")
    if not 1 <= warn_percent <= 100:
        raise SetupError("the warning threshold is a percentage from 1 to 100")
    for label, value in (
        ("first response", first_response_minutes),
        ("next response", next_response_minutes),
        ("resolution", resolution_minutes),
    ):
        if value is not None and value <= 0:
            raise SetupError(f"the {label} target must be a positive number of minutes")
    if policy is None:
        policy = SlaPolicy(created_at=now)
        session.add(policy)
    policy.name = name.strip()[:100]
    policy.position = position
    policy.queue = queue
    policy.priority = priority
    policy.calendar = calendar
    policy.first_response_minutes = first_response_minutes
    policy.first_response_business = first_response_business
    policy.next_response_minutes = next_response_minutes
    policy.next_response_business = next_response_business
    policy.resolution_minutes = resolution_minutes
    policy.resolution_business = resolution_business
    policy.warn_percent = warn_percent
    session.flush()
    mark_for_reevaluation(session, now=now)
    return policy


def delete_policy(session: Session, policy: SlaPolicy, *, now: datetime) -> None:
    session.delete(policy)
    session.flush()
    mark_for_reevaluation(session, now=now)


def mark_for_reevaluation(session: Session, *, now: datetime) -> int:
    """Open tickets get their clocks recomputed by the next escalation run."""
    active = select(Ticket.id).where(Ticket.status.in_(ACTIVE_STATUSES))
    result = session.execute(
        update(TicketSla).where(TicketSla.ticket_id.in_(active)).values(next_check_at=now)
    )
    return rowcount(result)


def calendars(session: Session) -> list[SlaCalendar]:
    return list(session.scalars(select(SlaCalendar).order_by(SlaCalendar.name)))


def policies(session: Session) -> list[SlaPolicy]:
    return list(session.scalars(select(SlaPolicy).order_by(SlaPolicy.position, SlaPolicy.id)))
