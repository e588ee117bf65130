"""A report's question (period, queue, agent, trend buckets) and where a moment falls in it.

A period is cut into buckets (days, ISO weeks or calendar months in the
report's time zone) by their bounds, the *edges*: each bucket's start (the
first one clipped to the period's start), then the period's end. A moment's
*index* is the number of edges at or before it: 0 before the period, k in
bucket k (1..n), n + 1 at or after its end. The whole period is the same with
one bucket (edges: start, end); ``period_index`` turns a trend index into it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

BUCKETS = ("day", "week", "month")


@dataclass(frozen=True)
class ReportQuery:
    start: datetime
    end: datetime
    queue: str | None = None
    agent: str | None = None  # assignee email
    bucket: str = "week"
    timezone: str = "UTC"


def bucket_start(moment: datetime, bucket: str, zone: ZoneInfo) -> date:
    local = moment.astimezone(zone).date()
    if bucket == "day":
        return local
    if bucket == "week":
        return local - timedelta(days=local.weekday())
    return local.replace(day=1)


def buckets(query: ReportQuery) -> list[date]:
    """The first day of each trend bucket that overlaps the period."""
    zone = ZoneInfo(query.timezone)
    first = bucket_start(query.start, query.bucket, zone)
    last = bucket_start(query.end - timedelta(microseconds=1), query.bucket, zone)
    found, day = [], first
    while day <= last:
        found.append(day)
        if query.bucket == "day":
            day += timedelta(days=1)
        elif query.bucket == "week":
            day += timedelta(days=7)
        else:
            day = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    return found


def bucket_bounds(query: ReportQuery) -> list[tuple[date, datetime, datetime]]:
    """Each trend bucket: its first day, and its bounds in UTC clipped to the period."""
    zone = ZoneInfo(query.timezone)
    starts = buckets(query)
    bounds = []
    for index, day in enumerate(starts):
        lo = datetime.combine(day, datetime.min.time(), zone).astimezone(UTC)
        if index + 1 < len(starts):
            hi = datetime.combine(starts[index + 1], datetime.min.time(), zone).astimezone(UTC)
        else:
            hi = query.end
        bounds.append((day, max(lo, query.start), min(hi, query.end)))
    return bounds


def edges(query: ReportQuery) -> list[datetime]:
    return [lo for _, lo, _ in bucket_bounds(query)] + [query.end]


def period_index(index: int, buckets: int) -> int:
    """The index in the whole period (0 before, 1 in, 2 after it) of a trend index."""
    return 0 if index == 0 else 1 if index <= buckets else 2
