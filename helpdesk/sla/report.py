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
percentile_cont does). PostgreSQL aggregates in SQL, in one statement that
reads the tickets in scope once and groups them by period, queue, agent and
trend bucket at once; SQLite reads them and counts in one pass in Python.
Both count each ticket into the buckets of its creation and resolution (see
"Counting by bucket"); ``build_from_rows`` computes every figure directly
from per-ticket rows and is the reference both are checked against.
"""

from __future__ import annotations

import io
import math
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import (
    DateTime,
    Float,
    Integer,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    null,
    or_,
    select,
    tuple_,
    type_coerce,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from helpdesk import export
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


# --- Counting by bucket (both backends) ---------------------------------------------
#
# A period is cut into buckets by their bounds ("edges": each bucket's start, the
# first one clipped to the period's start, then the period's end). A moment's index
# is the number of edges at or before it: 0 before the period, k in bucket k (1..n),
# n + 1 at or after its end. A bucket's figures then follow from counts per index: it
# has the tickets created in it (created, first and next response, breaches) and
# those resolved in it (resolved, resolution time); its resolution outcomes add the
# tickets created in it with a resolution breach but not resolved in it. A ticket is
# in the backlog at the end of buckets max(kc, 1) .. kr - 1 (kc, kr: the indexes of
# its creation and resolution; to the end if unresolved): it is "opened" at the first
# and "closed" at kr, and the backlog is their running sum. The whole period is the
# same with one bucket (edges: start, end). ``build_from_rows`` is the reference.


_COUNTS = (
    "created", "resolved", "opened", "closed", "fr_total", "fr_within", "res_total",
    "res_within", "nr_total", "nr_within", "breaches",
)  # fmt: skip


class _Tally:
    """The counts (and, on SQLite, the samples) of one bucket of one group."""

    __slots__ = (
        "breaches", "closed", "created", "first_median", "first_p90", "first_times",
        "fr_total", "fr_within", "nr_total", "nr_within", "opened", "res_total", "res_within",
        "resolution_median", "resolution_p90", "resolution_times", "resolved",
    )  # fmt: skip

    def __init__(self) -> None:
        self.created = self.resolved = self.opened = self.closed = 0
        self.fr_total = self.fr_within = self.res_total = self.res_within = 0
        self.nr_total = self.nr_within = self.breaches = 0
        self.first_times: list[float] = []
        self.resolution_times: list[float] = []
        self.first_median: float | None = None
        self.first_p90: float | None = None
        self.resolution_median: float | None = None
        self.resolution_p90: float | None = None

    def add(self, other: _Tally) -> None:
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.first_times += other.first_times
        self.resolution_times += other.resolution_times

    def take_percentiles(self) -> None:
        self.first_median, self.first_p90 = _median_p90(self.first_times)
        self.resolution_median, self.resolution_p90 = _median_p90(self.resolution_times)


def _median_p90(values: list[float]) -> tuple[float | None, float | None]:
    ordered = sorted(values)  # percentile() sorts again: linear on a sorted list
    return percentile(ordered, 0.5), percentile(ordered, 0.9)


def _assemble(tallies: list[_Tally]) -> list[Figures]:
    """The figures of buckets 1..n from their n + 2 tallies."""
    out, backlog = [], 0
    for t in tallies[1:-1]:
        backlog += t.opened - t.closed
        out.append(
            Figures(
                t.created, t.resolved, backlog, t.first_median, t.first_p90,
                t.resolution_median, t.resolution_p90, _pct(t.fr_within, t.fr_total),
                _pct(t.res_within, t.res_total), _pct(t.nr_within, t.nr_total), t.breaches,
            )
        )  # fmt: skip
    return out


def _edges(query: ReportQuery) -> list[datetime]:
    return [lo for _, lo, _ in _bucket_bounds(query)] + [query.end]


def _in_period(query: ReportQuery):  # type: ignore[no-untyped-def]
    """Tickets created in the period or in the backlog at its start (as ``ticket_rows``)."""
    return and_(
        Ticket.created_at < query.end,
        or_(
            Ticket.created_at >= query.start,
            TicketSla.resolved_at.is_(None),
            TicketSla.resolved_at >= query.start,
        ),
    )


def _clock_columns() -> list:  # type: ignore[type-arg]
    """Per ticket: first response minutes, outcome, breached; resolution minutes, breached;
    next response outcome, breached."""
    sla = TicketSla
    return [
        sla.first_response_minutes,
        or_(sla.first_response_at.is_not(None), sla.first_response_breached_at.is_not(None)),
        sla.first_response_breached_at.is_not(None),
        sla.resolution_minutes,
        sla.resolution_breached_at.is_not(None),
        or_(sla.next_response_breached_at.is_not(None), sla.next_response_answered > 0),
        sla.next_response_breached_at.is_not(None),
    ]


def _count(tallies: list[_Tally], kc: int, kr: int | None, n: int, clocks) -> None:  # type: ignore[no-untyped-def]
    """Count one ticket (``clocks`` as ``_clock_columns``) into its buckets' tallies."""
    first_minutes, fr_outcome, fr_breached, res_minutes, res_breached, nr_outcome, nr_breached = (
        clocks
    )
    first = kc or 1
    if kr is None or kr > first:
        tallies[first].opened += 1
        if kr is not None:
            tallies[kr].closed += 1
    if 0 < kc <= n:
        t = tallies[kc]
        t.created += 1
        if first_minutes is not None:
            t.first_times.append(first_minutes)
        if fr_outcome:
            t.fr_total += 1
            t.fr_within += not fr_breached
        if nr_outcome:
            t.nr_total += 1
            t.nr_within += not nr_breached
        if fr_breached or res_breached or nr_breached:
            t.breaches += 1
        if res_breached and kr != kc:
            t.res_total += 1
    if kr is not None and 0 < kr <= n:
        t = tallies[kr]
        t.resolved += 1
        if res_minutes is not None:
            t.resolution_times.append(res_minutes)
        t.res_total += 1
        t.res_within += not res_breached


def _breach_rows(session: Session, query: ReportQuery) -> list[TicketRow]:
    stmt = _scope(query).where(
        Ticket.created_at >= query.start,
        Ticket.created_at < query.end,
        or_(
            TicketSla.first_response_breached_at.is_not(None),
            TicketSla.resolution_breached_at.is_not(None),
            TicketSla.next_response_breached_at.is_not(None),
        ),
    )
    rows = session.connection().execute(stmt.order_by(Ticket.number))  # Core: no ORM loading
    return [TicketRow(*r) for r in rows]


# --- SQLite: one pass in Python --------------------------------------------------------


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def _sqlite_report(session: Session, query: ReportQuery) -> Report:
    """Every figure from one pass over the tickets in scope (SQLite has no percentile_cont).

    The period's figures are counted per (queue, assignee) and summed into the total,
    per queue and per agent; timestamps are compared as stored (naive UTC)."""
    bounds = _bucket_bounds(query)
    n = len(bounds)
    edges = [_naive_utc(e) for e in _edges(query)]
    stmt = (
        _scope(query)
        .with_only_columns(
            Queue.slug,
            func.coalesce(User.email, ""),
            type_coerce(Ticket.created_at, DateTime()),
            type_coerce(TicketSla.resolved_at, DateTime()),
            *_clock_columns(),
            maintain_column_froms=True,
        )
        .where(_in_period(query))
    )
    trend = [_Tally() for _ in range(n + 2)]
    cells: dict[tuple[str, str], list[_Tally]] = {}
    for queue, assignee, created, resolved, *clocks in session.connection().execute(stmt):
        kc = bisect_right(edges, created)
        kr = None if resolved is None else bisect_right(edges, resolved)
        _count(trend, kc, kr, n, clocks)
        cell = cells.get((queue, assignee))
        if cell is None:
            cell = cells[(queue, assignee)] = [_Tally(), _Tally(), _Tally()]
        # The period as one bucket: 0 before, 1 in, 2 after it.
        period_kr = None if kr is None else min(kr, 1) if kr <= n else 2
        _count(cell, min(kc, 1) if kc <= n else 2, period_kr, 1, clocks)

    def merged(parts: list[list[_Tally]]) -> Figures:
        total = [_Tally(), _Tally(), _Tally()]
        for part in parts:
            for into, tally in zip(total, part, strict=True):
                into.add(tally)
        total[1].take_percentiles()
        return _assemble(total)[0]

    by_queue: dict[str, list[list[_Tally]]] = defaultdict(list)
    by_agent: dict[str, list[list[_Tally]]] = defaultdict(list)
    for (queue, assignee), cell in cells.items():
        by_queue[queue].append(cell)
        by_agent[assignee or "(unassigned)"].append(cell)
    report = Report(query, merged(list(cells.values())))
    report.by_queue = {name: merged(parts) for name, parts in sorted(by_queue.items())}
    report.by_agent = {name: merged(parts) for name, parts in sorted(by_agent.items())}
    for tally in trend:
        tally.take_percentiles()
    report.trend = [(day, fig) for (day, _, _), fig in zip(bounds, _assemble(trend), strict=True)]
    report.breaches = _breach_rows(session, query)
    return report


# --- PostgreSQL: the same counts and percentiles in SQL --------------------------------

# GROUPING(queue, assignee, period index, bucket index) of each grouping set.
_PG_SETS = {13: "total", 5: "queue", 9: "agent", 14: "trend"}


def _pg_report(session: Session, query: ReportQuery) -> Report:
    """One statement: the tickets in scope are read once (CTE ``base``: queue, assignee,
    creation and resolution indexes in the trend and in the period, clocks), then
    grouped four ways at once (GROUPING SETS: period total, per queue, per agent, per
    trend bucket) for the counts by creation, the counts by resolution, and the
    percentiles of first response and of resolution time."""
    bounds = _bucket_bounds(query)
    n = len(bounds)
    edges = bindparam("edges", _edges(query), type_=ARRAY(DateTime(timezone=True)))
    kc = func.width_bucket(Ticket.created_at, edges)
    kr = func.width_bucket(TicketSla.resolved_at, edges)
    names = ("frm", "fr_out", "fr_br", "resm", "res_br", "nr_out", "nr_br")
    base = (
        _scope(query)
        .with_only_columns(
            Ticket.queue_id.label("q"),
            Ticket.assignee_id.label("a"),
            kc.label("kc"),
            kr.label("kr"),
            # The period as one bucket: 0 before, 1 in, 2 after it.
            case((kc == 0, 0), (kc <= n, 1), else_=2).label("kp"),
            case((kr == 0, 0), (kr <= n, 1), else_=2).label("krp"),
            *(column.label(name) for column, name in zip(_clock_columns(), names, strict=True)),
            maintain_column_froms=True,
        )
        .where(_in_period(query))
        .cte("base")
    )
    b = base.c

    def count(condition=None):  # type: ignore[no-untyped-def]
        return func.count() if condition is None else func.count().filter(condition)

    def grouped(part: int, period, bucket, counts=(), percentiles=()):  # type: ignore[no-untyped-def]
        """Columns: part, grouping, queue, assignee, index, 10 counts, 2 percentiles."""
        counts = [*counts, *(cast(null(), Integer) for _ in range(10 - len(counts)))]
        return select(
            literal(part),
            func.grouping(b.q, b.a, period, bucket),
            b.q,
            b.a,
            func.coalesce(period, bucket),
            *counts,
            *(percentiles or (cast(null(), Float), cast(null(), Float))),
        ).group_by(
            func.grouping_sets(
                tuple_(period), tuple_(b.q, period), tuple_(b.a, period), tuple_(bucket)
            )
        )

    def percentiles(part: int, column, period, bucket):  # type: ignore[no-untyped-def]
        fractions = [func.percentile_cont(f).within_group(column) for f in (0.5, 0.9)]
        return grouped(part, period, bucket, percentiles=fractions).where(
            bucket.between(1, n), column.is_not(None)
        )

    by_creation = grouped(1, b.kp, b.kc, [
        count(), count(b.fr_out), count(and_(b.fr_out, ~b.fr_br)), count(b.nr_out),
        count(and_(b.nr_out, ~b.nr_br)), count(or_(b.fr_br, b.res_br, b.nr_br)),
        # Resolution breached but not resolved in the bucket; opened (see above).
        count(and_(b.res_br, b.kr.is_distinct_from(b.kc))),
        count(and_(b.res_br, b.krp.is_distinct_from(b.kp))),
        count(or_(b.kr.is_(None), b.kr > func.greatest(b.kc, 1))),
        count(or_(b.krp.is_(None), b.krp > func.greatest(b.kp, 1))),
    ])  # fmt: skip
    by_resolution = grouped(2, b.krp, b.kr, [
        count(), count(~b.res_br),
        count(b.kr > func.greatest(b.kc, 1)), count(b.krp > func.greatest(b.kp, 1)),
    ]).where(b.kr.is_not(None))  # fmt: skip
    stmt = union_all(
        by_creation,
        by_resolution,
        percentiles(3, b.frm, b.kp, b.kc),
        percentiles(4, b.resm, b.krp, b.kr),
    )
    groups: dict[str, dict[int | None, list[_Tally]]] = {d: {} for d in _PG_SETS.values()}
    for part, grouping, queue_id, user_id, k, *values in session.execute(stmt):
        dim = _PG_SETS[grouping]
        key = queue_id if dim == "queue" else user_id if dim == "agent" else None
        last = n if dim == "trend" else 1
        tallies = groups[dim].get(key)
        if tallies is None:
            tallies = groups[dim][key] = [_Tally() for _ in range(last + 2)]
        t = tallies[k] if 0 < k <= last else None
        trend = dim == "trend"
        if part == 1:
            tallies[max(k, 1)].opened += values[8] if trend else values[9]
            if t is not None:
                t.created, t.fr_total, t.fr_within, t.nr_total, t.nr_within = values[:5]
                t.breaches = values[5]
                t.res_total += values[6] if trend else values[7]
        elif part == 2:
            tallies[k].closed += values[2] if trend else values[3]
            if t is not None:
                t.resolved, t.res_within = values[:2]
                t.res_total += values[0]
        elif part == 3 and t is not None:
            t.first_median, t.first_p90 = values[10:12]
        elif t is not None:
            t.resolution_median, t.resolution_p90 = values[10:12]
    slugs = dict(session.execute(select(Queue.id, Queue.slug)).all())
    user_ids = [k for k in groups["agent"] if k is not None]
    emails = dict(session.execute(select(User.id, User.email).where(User.id.in_(user_ids))).all())
    total = groups["total"].get(None)
    report = Report(query, _assemble(total)[0] if total else Figures())
    report.by_queue = dict(sorted((slugs[k], _assemble(v)[0]) for k, v in groups["queue"].items()))
    report.by_agent = dict(
        sorted(
            (emails.get(k) or "(unassigned)", _assemble(v)[0]) for k, v in groups["agent"].items()
        )
    )
    trend_tallies = groups["trend"].get(None) or [_Tally() for _ in range(n + 2)]
    report.trend = [
        (day, fig) for (day, _, _), fig in zip(bounds, _assemble(trend_tallies), strict=True)
    ]
    report.breaches = _breach_rows(session, query)
    return report


def build(session: Session, query: ReportQuery) -> Report:
    """The report for ``query``: SQL aggregates on PostgreSQL, one pass in Python on SQLite."""
    if query.bucket not in BUCKETS:
        raise ValueError(f"bucket must be one of {', '.join(BUCKETS)}")
    if query.end <= query.start:
        raise ValueError("the period must end after it starts")
    if session.get_bind().dialect.name == "sqlite":
        return _sqlite_report(session, query)
    return _pg_report(session, query)


# --- CSV --------------------------------------------------------------------------


def figures_csv(report: Report) -> str:
    out = io.StringIO()
    names = list(asdict(Figures()))
    writer = export.writer(out)  # no formulas for spreadsheets
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
    writer = export.writer(out)  # no formulas for spreadsheets
    writer.writerow(names)
    for row in rows:
        values = [getattr(row, n) for n in names]
        writer.writerow([v.isoformat() if isinstance(v, datetime) else v for v in values])
    return out.getvalue()
