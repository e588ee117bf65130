"""SLA reports for managers: per queue, agent and period, from the stored clocks.

Figures for a period [start, end):
- created: tickets created in the period; resolved: tickets whose (last)
  resolution falls in it; backlog: tickets created before the end and not
  resolved by then (resolved later, or still open);
- first response time (median, p90, business minutes) over tickets created
  in the period that got a first response; resolution time over tickets
  resolved in the period;
- % within target per clock: first response among tickets created in the
  period whose clock has an outcome (answered, or breached); resolution
  among tickets resolved in the period or breached while created in it;
  next response among tickets created in the period with a next-response
  outcome;
- breaches: tickets created in the period with any clock breached.
Percentiles interpolate linearly between ranks (as PostgreSQL's
percentile_cont does). PostgreSQL aggregates in SQL, so a year of a million
tickets stays fast; SQLite reads the per-ticket rows and counts in Python.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, literal, or_, select
from sqlalchemy.orm import Session

from helpdesk.models import Queue, Ticket, TicketSla, User

BUCKETS = ("day", "week", "month")


@dataclass(frozen=True)
class ReportQuery:
    start: datetime
    end: datetime
    queue: str | None = None
    agent: str | None = None  # assignee email
    bucket: str = "week"
    timezone: str = "UTC"


@dataclass
class Figures:
    created: int = 0
    resolved: int = 0
    backlog: int = 0
    first_response_median: float | None = None
    first_response_p90: float | None = None
    resolution_median: float | None = None
    resolution_p90: float | None = None
    first_response_within: float | None = None  # percent
    resolution_within: float | None = None
    next_response_within: float | None = None
    breaches: int = 0


@dataclass
class TicketRow:
    """One ticket as the report sees it (also the per-ticket CSV export)."""

    number: int
    subject: str
    queue: str
    assignee: str
    status: str
    created_at: datetime
    resolved_at: datetime | None
    first_response_minutes: float | None
    first_response_breached_at: datetime | None
    first_response_at: datetime | None
    resolution_minutes: float | None
    resolution_breached_at: datetime | None
    next_response_breached_at: datetime | None
    next_response_outcome: bool


@dataclass
class Report:
    query: ReportQuery
    totals: Figures
    by_queue: dict[str, Figures] = field(default_factory=dict)
    by_agent: dict[str, Figures] = field(default_factory=dict)
    trend: list[tuple[date, Figures]] = field(default_factory=list)
    breaches: list[TicketRow] = field(default_factory=list)


def percentile(values: list[float], fraction: float) -> float | None:
    """Linear interpolation between closest ranks (percentile_cont)."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _pct(within: int, total: int) -> float | None:
    return None if total == 0 else 100.0 * within / total


def bucket_start(moment: datetime, bucket: str, zone: ZoneInfo) -> date:
    local = moment.astimezone(zone).date()
    if bucket == "day":
        return local
    if bucket == "week":
        return local - timedelta(days=local.weekday())
    return local.replace(day=1)


def buckets(query: ReportQuery) -> list[date]:
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


# --- Per-ticket rows -----------------------------------------------------------


def _scope(query: ReportQuery):  # type: ignore[no-untyped-def]
    """Base SELECT of tickets joined with their clocks, filtered by queue and agent."""
    assignee = User.email.label("assignee")
    stmt = (
        select(
            Ticket.number,
            Ticket.subject,
            Queue.slug,
            func.coalesce(assignee, ""),
            Ticket.status,
            Ticket.created_at,
            TicketSla.resolved_at,
            TicketSla.first_response_minutes,
            TicketSla.first_response_breached_at,
            TicketSla.first_response_at,
            TicketSla.resolution_minutes,
            TicketSla.resolution_breached_at,
            TicketSla.next_response_breached_at,
            or_(
                TicketSla.next_response_breached_at.is_not(None),
                TicketSla.next_response_answered > 0,
            ),
        )
        .join(Queue, Queue.id == Ticket.queue_id)
        .join(TicketSla, TicketSla.ticket_id == Ticket.id)
        .outerjoin(User, User.id == Ticket.assignee_id)
        .where(Ticket.merged_into_id.is_(None), TicketSla.policy_id.is_not(None))
    )
    if query.queue:
        stmt = stmt.where(Queue.slug == query.queue)
    if query.agent:
        stmt = stmt.where(User.email == query.agent)
    return stmt


def ticket_rows(session: Session, query: ReportQuery) -> list[TicketRow]:
    """Tickets created or resolved in the period, or in the backlog at its end."""
    stmt = _scope(query).where(
        Ticket.created_at < query.end,
        or_(
            Ticket.created_at >= query.start,
            TicketSla.resolved_at.is_(None),
            TicketSla.resolved_at >= query.start,
        ),
    )
    return [TicketRow(*row) for row in session.execute(stmt.order_by(Ticket.number))]


def figures_from_rows(rows: Iterable[TicketRow], start: datetime, end: datetime) -> Figures:
    """Every figure from per-ticket rows (the SQLite path, and the reference)."""
    fig = Figures()
    first_times: list[float] = []
    resolution_times: list[float] = []
    fr_within = fr_total = res_within = res_total = nr_within = nr_total = 0
    for row in rows:
        created_in = start <= row.created_at < end
        resolved_in = row.resolved_at is not None and start <= row.resolved_at < end
        if row.created_at < end and (row.resolved_at is None or row.resolved_at >= end):
            fig.backlog += 1
        if created_in:
            fig.created += 1
            if row.first_response_minutes is not None:
                first_times.append(row.first_response_minutes)
            if row.first_response_at is not None or row.first_response_breached_at is not None:
                fr_total += 1
                fr_within += row.first_response_breached_at is None
            if row.next_response_outcome:
                nr_total += 1
                nr_within += row.next_response_breached_at is None
            if (
                row.first_response_breached_at
                or row.resolution_breached_at
                or row.next_response_breached_at
            ):
                fig.breaches += 1
        if resolved_in:
            fig.resolved += 1
            if row.resolution_minutes is not None:
                resolution_times.append(row.resolution_minutes)
        if resolved_in or (created_in and row.resolution_breached_at is not None):
            res_total += 1
            res_within += row.resolution_breached_at is None
    fig.first_response_median = percentile(first_times, 0.5)
    fig.first_response_p90 = percentile(first_times, 0.9)
    fig.resolution_median = percentile(resolution_times, 0.5)
    fig.resolution_p90 = percentile(resolution_times, 0.9)
    fig.first_response_within = _pct(fr_within, fr_total)
    fig.resolution_within = _pct(res_within, res_total)
    fig.next_response_within = _pct(nr_within, nr_total)
    return fig


def _grouped(
    rows: list[TicketRow], key: Callable[[TicketRow], str], start: datetime, end: datetime
) -> dict[str, Figures]:
    groups: dict[str, list[TicketRow]] = defaultdict(list)
    for row in rows:
        groups[key(row)].append(row)
    return {name: figures_from_rows(items, start, end) for name, items in sorted(groups.items())}


def _bucket_bounds(query: ReportQuery) -> list[tuple[date, datetime, datetime]]:
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


def build_from_rows(rows: list[TicketRow], query: ReportQuery) -> Report:
    report = Report(query, figures_from_rows(rows, query.start, query.end))
    report.by_queue = _grouped(rows, lambda r: r.queue, query.start, query.end)
    report.by_agent = _grouped(rows, lambda r: r.assignee or "(unassigned)", query.start, query.end)
    report.trend = [(day, figures_from_rows(rows, lo, hi)) for day, lo, hi in _bucket_bounds(query)]
    report.breaches = [
        r
        for r in rows
        if query.start <= r.created_at < query.end
        and (
            r.first_response_breached_at or r.resolution_breached_at or r.next_response_breached_at
        )
    ]
    return report


# --- PostgreSQL: the same figures aggregated in SQL ---------------------------------


def _pg_figures(session: Session, query: ReportQuery, group, start: datetime, end: datetime):  # type: ignore[no-untyped-def]
    """Figures per value of ``group`` (a SQL expression, or None for the total)."""
    created_in = and_(Ticket.created_at >= start, Ticket.created_at < end)
    resolved_in = and_(TicketSla.resolved_at >= start, TicketSla.resolved_at < end)
    backlog = and_(
        Ticket.created_at < end, or_(TicketSla.resolved_at.is_(None), TicketSla.resolved_at >= end)
    )
    fr_outcome = or_(
        TicketSla.first_response_at.is_not(None), TicketSla.first_response_breached_at.is_not(None)
    )
    nr_outcome = or_(
        TicketSla.next_response_breached_at.is_not(None), TicketSla.next_response_answered > 0
    )
    any_breach = or_(
        TicketSla.first_response_breached_at.is_not(None),
        TicketSla.resolution_breached_at.is_not(None),
        TicketSla.next_response_breached_at.is_not(None),
    )
    res_outcome = or_(resolved_in, and_(created_in, TicketSla.resolution_breached_at.is_not(None)))

    def count(condition):  # type: ignore[no-untyped-def]
        return func.count().filter(condition)

    def pct(condition, within):  # type: ignore[no-untyped-def]
        total = count(condition)
        return case((total == 0, None), else_=100.0 * count(and_(condition, within)) / total)

    def pctl(fraction: float, column, condition):  # type: ignore[no-untyped-def]
        return func.percentile_cont(fraction).within_group(column).filter(condition)

    fr_done = and_(created_in, TicketSla.first_response_minutes.is_not(None))
    res_done = and_(resolved_in, TicketSla.resolution_minutes.is_not(None))
    key = group if group is not None else literal("")
    stmt = (
        _scope(query)
        .with_only_columns(
            key.label("key"),
            count(created_in),
            count(resolved_in),
            count(backlog),
            pctl(0.5, TicketSla.first_response_minutes, fr_done),
            pctl(0.9, TicketSla.first_response_minutes, fr_done),
            pctl(0.5, TicketSla.resolution_minutes, res_done),
            pctl(0.9, TicketSla.resolution_minutes, res_done),
            pct(and_(created_in, fr_outcome), TicketSla.first_response_breached_at.is_(None)),
            pct(res_outcome, TicketSla.resolution_breached_at.is_(None)),
            pct(and_(created_in, nr_outcome), TicketSla.next_response_breached_at.is_(None)),
            count(and_(created_in, any_breach)),
            maintain_column_froms=True,
        )
        .where(
            Ticket.created_at < end,
            or_(
                Ticket.created_at >= start,
                TicketSla.resolved_at.is_(None),
                TicketSla.resolved_at >= start,
            ),
        )
        .group_by(key)
    )
    out: dict[str, Figures] = {}
    for row in session.execute(stmt):
        values = [None if v is None else float(v) for v in row[4:11]]
        out[str(row[0] or "")] = Figures(
            row[1],
            row[2],
            row[3],
            *values,
            breaches=row[11],  # type: ignore[arg-type]
        )
    return out


def build(session: Session, query: ReportQuery) -> Report:
    """The report for ``query``; SQL aggregates on PostgreSQL, rows on SQLite."""
    if query.bucket not in BUCKETS:
        raise ValueError(f"bucket must be one of {', '.join(BUCKETS)}")
    if query.end <= query.start:
        raise ValueError("the period must end after it starts")
    if session.get_bind().dialect.name == "sqlite":
        return build_from_rows(ticket_rows(session, query), query)
    total = _pg_figures(session, query, None, query.start, query.end).get("", Figures())
    report = Report(query, total)
    report.by_queue = _pg_figures(session, query, Queue.slug, query.start, query.end)
    agent = func.coalesce(User.email, "(unassigned)")
    report.by_agent = _pg_figures(session, query, agent, query.start, query.end)
    report.trend = [
        (day, _pg_figures(session, query, None, lo, hi).get("", Figures()))
        for day, lo, hi in _bucket_bounds(query)
    ]
    breach_rows = _scope(query).where(
        Ticket.created_at >= query.start,
        Ticket.created_at < query.end,
        or_(
            TicketSla.first_response_breached_at.is_not(None),
            TicketSla.resolution_breached_at.is_not(None),
            TicketSla.next_response_breached_at.is_not(None),
        ),
    )
    report.breaches = [TicketRow(*r) for r in session.execute(breach_rows.order_by(Ticket.number))]
    return report


# --- CSV --------------------------------------------------------------------------


def figures_csv(report: Report) -> str:
    out = io.StringIO()
    names = list(asdict(Figures()))
    writer = csv.writer(out)
    writer.writerow(["scope", "key", *names])
    writer.writerow(["total", "", *asdict(report.totals).values()])
    for key, fig in report.by_queue.items():
        writer.writerow(["queue", key, *asdict(fig).values()])
    for key, fig in report.by_agent.items():
        writer.writerow(["agent", key, *asdict(fig).values()])
    for day, fig in report.trend:
        writer.writerow([report.query.bucket, day.isoformat(), *asdict(fig).values()])
    return out.getvalue()


def tickets_csv(rows: list[TicketRow]) -> str:
    out = io.StringIO()
    names = list(TicketRow.__dataclass_fields__)
    writer = csv.writer(out)
    writer.writerow(names)
    for row in rows:
        values = [getattr(row, n) for n in names]
        writer.writerow([v.isoformat() if isinstance(v, datetime) else v for v in values])
    return out.getvalue()
