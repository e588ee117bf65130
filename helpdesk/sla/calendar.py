"""Business calendars: working hours in a time zone, minus holidays, and the
arithmetic SLA clocks need (business minutes between two instants, and the
instant a number of business minutes after another).

Definition, which the tests check minute by minute: an instant is working
time when its local wall-clock time lies in one of the working ranges of some
local date that is not a holiday. A range is given in minutes from that
date's midnight and may end past 1440 (a shift past midnight belongs to the
date it starts on). DST is exact: within a stretch of constant UTC offset,
local time is UTC plus that offset, so each range maps to one UTC interval;
the day of a change is split at the change.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

MINUTE = timedelta(minutes=1)
DAY_MINUTES = 1440

Interval = tuple[datetime, datetime]


@dataclass(frozen=True)
class Calendar:
    """Working ranges per weekday (0 = Monday) as (start, end) minutes, and holidays."""

    timezone: str = "UTC"
    weekly: tuple[tuple[tuple[int, int], ...], ...] = ((),) * 7
    holidays: frozenset[date] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if len(self.weekly) != 7:
            raise ValueError("weekly needs seven days, Monday first")
        for ranges in self.weekly:
            for start, end in ranges:
                if not (0 <= start < end <= 2 * DAY_MINUTES) or start >= DAY_MINUTES:
                    raise ValueError(f"bad working range {start}-{end}")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @classmethod
    def always(cls, timezone: str = "UTC") -> Calendar:
        """24x7, no holidays: business minutes are elapsed minutes."""
        return cls(timezone, ((((0, DAY_MINUTES),),) * 7))

    @classmethod
    def office_hours(
        cls, timezone: str = "UTC", start: int = 9 * 60, end: int = 17 * 60
    ) -> Calendar:
        """Monday to Friday, ``start`` to ``end`` (minutes), the seeded default."""
        day = ((start, end),)
        return cls(timezone, (day, day, day, day, day, (), ()))


def _offset_changes(zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """UTC instants in [start, end) where the zone's offset changes (to the minute)."""
    changes = []
    probe = start
    step = timedelta(hours=6)
    while probe < end:
        nxt = min(probe + step, end)
        if probe.astimezone(zone).utcoffset() != nxt.astimezone(zone).utcoffset():
            lo, hi = probe, nxt  # offset(lo) differs from offset(hi): bisect to the minute
            while hi - lo > MINUTE:
                mid = lo + (hi - lo) / 2
                mid = mid.replace(second=0, microsecond=0)
                if mid <= lo:
                    mid = lo + MINUTE
                if mid.astimezone(zone).utcoffset() == lo.astimezone(zone).utcoffset():
                    lo = mid
                else:
                    hi = mid
            changes.append(hi)
        probe = nxt
    return changes


def _segments(
    zone: ZoneInfo, start: datetime, end: datetime
) -> Iterator[tuple[datetime, datetime, timedelta]]:
    """[start, end) cut into stretches of constant UTC offset: (from, to, offset)."""
    cuts = [start, *_offset_changes(zone, start, end), end]
    for a, b in itertools.pairwise(cuts):
        if a < b:
            yield a, b, a.astimezone(zone).utcoffset() or timedelta(0)


def working_intervals(calendar: Calendar, start: datetime, end: datetime) -> list[Interval]:
    """The working time within [start, end) as sorted, disjoint UTC intervals."""
    if end <= start:
        return []
    # Local wall time is computed as UTC plus offset below: inputs in any other
    # zone (e.g. the desk's) would be shifted twice.
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    zone = calendar.zone
    found: list[Interval] = []
    for seg_start, seg_end, offset in _segments(zone, start, end):
        # Local wall time in this stretch is UTC + offset (naive arithmetic).
        local_from = (seg_start + offset).replace(tzinfo=None)
        local_to = (seg_end + offset).replace(tzinfo=None)
        day = local_from.date() - timedelta(days=1)  # a shift past midnight may reach in
        while day <= local_to.date():
            if day not in calendar.holidays:
                midnight = datetime.combine(day, datetime.min.time())
                for range_start, range_end in calendar.weekly[day.weekday()]:
                    lo = max(midnight + timedelta(minutes=range_start), local_from)
                    hi = min(midnight + timedelta(minutes=range_end), local_to)
                    if lo < hi:
                        found.append(
                            ((lo - offset).replace(tzinfo=UTC), (hi - offset).replace(tzinfo=UTC))
                        )
            day += timedelta(days=1)
    return _merge(found)


def _merge(intervals: list[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for a, b in sorted(intervals):
        if merged and a <= merged[-1][1]:
            if b > merged[-1][1]:
                merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


def business_minutes(calendar: Calendar, start: datetime, end: datetime) -> float:
    """Working minutes in [start, end); 0 when end is not after start."""
    total = sum(((b - a) for a, b in working_intervals(calendar, start, end)), timedelta(0))
    return total / MINUTE


def add_business_minutes(
    calendar: Calendar, start: datetime, minutes: float, *, horizon_days: int = 3660
) -> datetime | None:
    """The instant at which ``minutes`` of working time after ``start`` have passed.

    That is the earliest instant t with ``business_minutes(start, t) == minutes``,
    so zero minutes are ``start`` itself. Returns None when the calendar has no
    working time within the horizon (e.g. every day a holiday): such a clock
    never comes due.
    """
    if minutes <= 0:
        return start
    remaining = timedelta(minutes=minutes)
    window = timedelta(days=14)
    cursor = start
    limit = start + timedelta(days=horizon_days)
    while cursor < limit:
        for a, b in working_intervals(calendar, cursor, min(cursor + window, limit)):
            if remaining <= b - a:
                return a + remaining
            remaining -= b - a
        cursor = min(cursor + window, limit)
    return None


@dataclass(frozen=True)
class Progress:
    """Where a clock stands: minutes used, and when it breached or will breach."""

    elapsed: float
    breach_at: datetime | None  # when elapsed reached the target (past or projected)
    running: bool


def progress(
    calendar: Calendar,
    running: list[tuple[datetime, datetime | None]],
    target: float,
    *,
    now: datetime,
) -> Progress:
    """Business minutes a clock has used over its running intervals (an open one,
    ending None, runs until ``now``), and the instant it reached its target or,
    if it runs on, will reach it."""
    elapsed = 0.0
    breach_at: datetime | None = None
    for a, b in running:
        end = now if b is None else min(b, now)
        if end <= a:
            continue
        minutes = business_minutes(calendar, a, end)
        if breach_at is None and elapsed + minutes >= target:
            breach_at = add_business_minutes(calendar, a, target - elapsed)
        elapsed += minutes
    is_running = bool(running) and running[-1][1] is None
    if breach_at is None and is_running:
        breach_at = add_business_minutes(calendar, max(now, running[-1][0]), target - elapsed)
    return Progress(elapsed, breach_at, is_running)
