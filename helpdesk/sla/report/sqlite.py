"""The report's counts on SQLite: one pass in Python over the tickets in scope.

SQLite has no ``percentile_cont``, so every ticket is read once (its queue,
assignee, creation and resolution, clock outcomes and response times) and
counted into the trend buckets and into the whole period of its queue and
assignee; percentiles come from the samples. Timestamps are compared as
stored (naive UTC).
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import UTC, datetime

from sqlalchemy import DateTime, type_coerce
from sqlalchemy.orm import Session

from helpdesk.models import Ticket, TicketSla
from helpdesk.sla.report.figures import (
    Counts,
    GroupKey,
    Tally,
    count_ticket,
    sample_ticket,
    tallies,
)
from helpdesk.sla.report.period import ReportQuery, edges, period_index
from helpdesk.sla.report.tickets import in_period, outcome_columns, scope


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def groups(session: Session, query: ReportQuery) -> dict[str, dict[GroupKey, list[Tally]]]:
    """Every group's tallies, counted and with percentiles taken (see ``Counts``)."""
    bounds = [_naive_utc(moment) for moment in edges(query)]
    n = len(bounds) - 1
    stmt = (
        scope(query)
        .with_only_columns(
            Ticket.queue_id,
            Ticket.assignee_id,
            type_coerce(Ticket.created_at, DateTime()),
            type_coerce(TicketSla.resolved_at, DateTime()),
            TicketSla.first_response_minutes,
            TicketSla.resolution_minutes,
            *outcome_columns(),
            maintain_column_froms=True,
        )
        .where(in_period(query))
    )
    counts = Counts(trend=tallies(n), cells={})
    for (
        queue_id,
        user_id,
        created,
        resolved,
        first,
        resolution,
        *outcomes,
    ) in session.connection().execute(stmt):
        kc = bisect_right(bounds, created)
        kr = None if resolved is None else bisect_right(bounds, resolved)
        count_ticket(counts.trend, kc, kr, n, outcomes)
        sample_ticket(counts.trend, kc, kr, n, first, resolution)
        cell = counts.cells.get((queue_id, user_id))
        if cell is None:
            cell = counts.cells[(queue_id, user_id)] = tallies(1)
        kp, krp = period_index(kc, n), None if kr is None else period_index(kr, n)
        count_ticket(cell, kp, krp, 1, outcomes)
        sample_ticket(cell, kp, krp, 1, first, resolution)
    found = counts.groups()
    for by_key in found.values():
        for group in by_key.values():
            for tally in group:
                tally.take_percentiles()
    return found
