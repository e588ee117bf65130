"""Holidays for business calendars: single dates, an iCalendar file (all-day
events, yearly rules expanded), or the ``holidays`` package by country and region."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta

import holidays as holiday_data
import icalendar
from dateutil.rrule import rrulestr
from sqlalchemy.orm import Session

from helpdesk.models import SlaCalendar, SlaHoliday


class HolidayError(ValueError):
    """The holiday source cannot be read; the message is safe to show."""


def add(session: Session, calendar: SlaCalendar, days: Iterable[tuple[date, str]]) -> int:
    """Add holidays not yet on the calendar; returns how many were new."""
    known = {h.day for h in calendar.holidays}
    added = 0
    for day, name in sorted(days):
        if day in known:
            continue
        calendar.holidays.append(SlaHoliday(day=day, name=name[:200]))
        known.add(day)
        added += 1
    return added


def from_country(
    country: str, subdivision: str | None, years: Iterable[int]
) -> list[tuple[date, str]]:
    try:
        table = holiday_data.country_holidays(
            country.upper(), subdiv=subdivision or None, years=list(years)
        )
    except (NotImplementedError, KeyError) as exc:
        raise HolidayError(f"no holiday data for {country}/{subdivision or '-'}") from exc
    return sorted((day, str(name)) for day, name in table.items())


def from_ical(data: bytes, years: Iterable[int]) -> list[tuple[date, str]]:
    """All-day events of an iCalendar file that fall in ``years``."""
    wanted = set(years)
    try:
        parsed = icalendar.Calendar.from_ical(data)
    except ValueError as exc:
        raise HolidayError(f"not an iCalendar file: {exc}") from exc
    found: list[tuple[date, str]] = []
    for event in parsed.walk("VEVENT"):
        start = event.get("DTSTART")
        if start is None:
            continue
        first = start.dt
        if isinstance(first, datetime):
            first = first.date()
        end = event.get("DTEND")
        last = end.dt if end is not None else first + timedelta(days=1)
        if isinstance(last, datetime):
            last = last.date() + timedelta(days=1)
        length = max((last - first).days, 1)
        name = str(event.get("SUMMARY", "Holiday"))
        starts = [first]
        if event.get("RRULE"):
            ical = event["RRULE"].to_ical()
            rule = rrulestr(
                ical.decode() if isinstance(ical, bytes) else ical,
                dtstart=datetime.combine(first, datetime.min.time()),
            )
            until = datetime(max(wanted) + 1, 1, 1) if wanted else datetime(first.year + 1, 1, 1)
            starts = [
                d.date()
                for d in rule.between(datetime.combine(first, datetime.min.time()), until, inc=True)
            ]
        for begin in starts:
            for offset in range(min(length, 366)):
                day = begin + timedelta(days=offset)
                if not wanted or day.year in wanted:
                    found.append((day, name))
    return sorted(set(found))
