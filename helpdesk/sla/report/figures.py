"""The figures of a report, and the one place that says what a ticket counts for.

Figures for a period [start, end), and for each trend bucket alike:
- created: tickets created in it; resolved: tickets whose (last) resolution
  falls in it; backlog: tickets created before its end and not resolved by
  then (resolved later, or still open);
- first response time (median, p90, business minutes) over the tickets
  created in it that got a first response; resolution time over the tickets
  resolved in it;
- % within target per clock: first response among the tickets created in it
  whose clock has an outcome (answered, or breached); resolution among the
  tickets resolved in it or breached while created in it; next response
  among the tickets created in it with a next-response outcome;
- breaches: tickets created in it with any clock breached.
Percentiles interpolate linearly between ranks (as PostgreSQL's
``percentile_cont`` does).

``count_ticket`` counts one ticket (or ``weight`` tickets alike) into the
tallies of the buckets its creation and resolution fall in (their indexes,
``period``); ``figures_of`` turns a group's tallies into its figures. A
ticket is in the backlog at the end of buckets max(kc, 1) .. kr - 1 (kc, kr:
the indexes of its creation and resolution; to the end if unresolved): it is
"opened" at the first and "closed" at kr, and the backlog is their running
sum. Both backends count with these two functions; they differ only in where
the counts and percentiles come from (``sqlite``, ``postgres``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

from helpdesk.sla.report.period import ReportQuery
from helpdesk.sla.report.tickets import TicketRow


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


_COUNTS = (
    "created", "resolved", "opened", "closed", "fr_total", "fr_within", "res_total",
    "res_within", "nr_total", "nr_within", "breaches",
)  # fmt: skip


class Tally:
    """The counts of one bucket of one group, and its response times: the samples
    (when the backend reads every ticket) or their median and p90."""

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

    def add(self, other: Tally) -> None:
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.first_times += other.first_times
        self.resolution_times += other.resolution_times

    def take_percentiles(self) -> None:
        """Median and p90 of the samples."""
        self.first_median, self.first_p90 = _median_p90(self.first_times)
        self.resolution_median, self.resolution_p90 = _median_p90(self.resolution_times)


def _median_p90(values: list[float]) -> tuple[float | None, float | None]:
    ordered = sorted(values)  # percentile() sorts again: linear on a sorted list
    return percentile(ordered, 0.5), percentile(ordered, 0.9)


def tallies(buckets: int) -> list[Tally]:
    """Tallies for indexes 0 (before the period) .. buckets + 1 (after it)."""
    return [Tally() for _ in range(buckets + 2)]


def count_ticket(
    into: list[Tally],
    kc: int,
    kr: int | None,
    buckets: int,
    outcomes: Sequence[bool],
    weight: int = 1,
) -> None:
    """Count ``weight`` tickets created at index ``kc`` and resolved at ``kr`` (None:
    unresolved) into the tallies of their buckets. ``outcomes`` are their clocks' as
    ``tickets.outcome_columns`` selects them: first response has an outcome, was
    breached; resolution was breached; next response has an outcome, was breached."""
    fr_outcome, fr_breached, res_breached, nr_outcome, nr_breached = outcomes
    first = kc or 1
    if kr is None or kr > first:
        into[first].opened += weight
        if kr is not None:
            into[kr].closed += weight
    if 0 < kc <= buckets:
        t = into[kc]
        t.created += weight
        if fr_outcome:
            t.fr_total += weight
            t.fr_within += 0 if fr_breached else weight
        if nr_outcome:
            t.nr_total += weight
            t.nr_within += 0 if nr_breached else weight
        if fr_breached or res_breached or nr_breached:
            t.breaches += weight
        if res_breached and kr != kc:
            t.res_total += weight
    if kr is not None and 0 < kr <= buckets:
        t = into[kr]
        t.resolved += weight
        t.res_total += weight
        t.res_within += 0 if res_breached else weight


def sample_ticket(
    into: list[Tally],
    kc: int,
    kr: int | None,
    buckets: int,
    first_minutes: float | None,
    resolution_minutes: float | None,
) -> None:
    """Keep one ticket's response times in the buckets they count in: the first
    response where it was created, the resolution where it was resolved."""
    if first_minutes is not None and 0 < kc <= buckets:
        into[kc].first_times.append(first_minutes)
    if resolution_minutes is not None and kr is not None and 0 < kr <= buckets:
        into[kr].resolution_times.append(resolution_minutes)


def merged(parts: Iterable[list[Tally]], buckets: int) -> list[Tally]:
    """The tallies of a group made of several."""
    total = tallies(buckets)
    for part in parts:
        for into, tally in zip(total, part, strict=True):
            into.add(tally)
    return total


def figures_of(group: list[Tally]) -> list[Figures]:
    """The figures of buckets 1..n from their n + 2 tallies (percentiles already taken)."""
    out, backlog = [], 0
    for t in group[1:-1]:
        backlog += t.opened - t.closed
        out.append(
            Figures(
                created=t.created,
                resolved=t.resolved,
                backlog=backlog,
                first_response_median=t.first_median,
                first_response_p90=t.first_p90,
                resolution_median=t.resolution_median,
                resolution_p90=t.resolution_p90,
                first_response_within=_pct(t.fr_within, t.fr_total),
                resolution_within=_pct(t.res_within, t.res_total),
                next_response_within=_pct(t.nr_within, t.nr_total),
                breaches=t.breaches,
            )
        )
    return out


# A group's key: its queue id ("queue"), its assignee's user id, None when unassigned
# ("agent"), or None ("total": the whole period; "trend": the trend buckets).
GroupKey = int | None


@dataclass
class Counts:
    """What a backend counted: the trend buckets' tallies, and the whole period's
    (indexes 0..2) per queue and assignee."""

    trend: list[Tally]
    cells: dict[tuple[int, int | None], list[Tally]]

    def groups(self) -> dict[str, dict[GroupKey, list[Tally]]]:
        """Every group the report shows, by dimension ("total", "queue", "agent",
        "trend") and key, with its tallies."""
        by_queue: dict[GroupKey, list[list[Tally]]] = {}
        by_agent: dict[GroupKey, list[list[Tally]]] = {}
        for (queue_id, user_id), cell in self.cells.items():
            by_queue.setdefault(queue_id, []).append(cell)
            by_agent.setdefault(user_id, []).append(cell)
        return {
            "total": {None: merged(self.cells.values(), 1)},
            "queue": {key: merged(parts, 1) for key, parts in by_queue.items()},
            "agent": {key: merged(parts, 1) for key, parts in by_agent.items()},
            "trend": {None: self.trend},
        }
