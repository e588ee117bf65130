"""The SLA report's figures recomputed by brute force from per-ticket rows.

``bench/sla_report.py --verify`` checks ``helpdesk.sla.report.build`` against
this: every figure of every bucket straight from its definition
(``helpdesk/sla/report/figures.py``), ticket by ticket, bucket by bucket. It
is slow (rows times buckets), so verify on small databases.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime

from helpdesk.sla.report import Figures, Report, ReportQuery, TicketRow, percentile
from helpdesk.sla.report.period import bucket_bounds


def _pct(within: int, total: int) -> float | None:
    return None if total == 0 else 100.0 * within / total


def figures_from_rows(rows: Iterable[TicketRow], start: datetime, end: datetime) -> Figures:
    """Every figure of [start, end) from per-ticket rows."""
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


def build_from_rows(rows: list[TicketRow], query: ReportQuery) -> Report:
    """The report from ``helpdesk.sla.report.ticket_rows(session, query)``."""
    report = Report(query, figures_from_rows(rows, query.start, query.end))
    report.by_queue = _grouped(rows, lambda r: r.queue, query.start, query.end)
    report.by_agent = _grouped(rows, lambda r: r.assignee or "(unassigned)", query.start, query.end)
    report.trend = [(day, figures_from_rows(rows, lo, hi)) for day, lo, hi in bucket_bounds(query)]
    report.breaches = [
        r
        for r in rows
        if query.start <= r.created_at < query.end
        and (
            r.first_response_breached_at or r.resolution_breached_at or r.next_response_breached_at
        )
    ]
    return report
