"""The report's counts on PostgreSQL: counted and ranked in SQL, read back in few rows.

The tickets in scope (CTE ``base``: queue, assignee, the indexes of their
creation and resolution in the trend and in the whole period, clock
outcomes, response times) are counted by everything ``figures.count_ticket``
looks at, once per trend and once per whole period of each queue and
assignee (GROUPING SETS); each such row is counted in Python with its number
of tickets as the weight. The percentiles of first response and resolution
time are ``percentile_cont`` per period total, queue, agent and trend bucket.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    CompoundSelect,
    DateTime,
    Select,
    bindparam,
    case,
    func,
    literal,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from helpdesk.models import Ticket, TicketSla
from helpdesk.sla.report.figures import Counts, GroupKey, Tally, count_ticket, tallies
from helpdesk.sla.report.period import ReportQuery, edges
from helpdesk.sla.report.tickets import in_period, outcome_columns, scope

_OUTCOMES = ("fr_outcome", "fr_breached", "res_breached", "nr_outcome", "nr_breached")


def _base(query: ReportQuery, buckets: int) -> CTE:
    bounds = bindparam("edges", edges(query), type_=ARRAY(DateTime(timezone=True)))
    kc = func.width_bucket(Ticket.created_at, bounds)
    kr = func.width_bucket(TicketSla.resolved_at, bounds)

    def period(index: ColumnElement[int]) -> ColumnElement[int]:  # as period.period_index
        return case((index == 0, 0), (index <= buckets, 1), (index > buckets, 2))

    return (
        scope(query)
        .with_only_columns(
            Ticket.queue_id.label("queue_id"),
            Ticket.assignee_id.label("user_id"),
            kc.label("kc"),
            kr.label("kr"),
            period(kc).label("kp"),
            period(kr).label("krp"),
            TicketSla.first_response_minutes.label("first_minutes"),
            TicketSla.resolution_minutes.label("resolution_minutes"),
            *(
                column.label(name)
                for column, name in zip(outcome_columns(), _OUTCOMES, strict=True)
            ),
            maintain_column_froms=True,
        )
        .where(in_period(query))
        .cte("base")
    )


def _counts(base: CTE) -> Select[*tuple[Any, ...]]:
    """Tickets alike for ``count_ticket``: per trend (creation and resolution index,
    outcomes) and per whole period of a queue and assignee (``whole_period`` = 1)."""
    b = base.c
    outcomes = [b[name] for name in _OUTCOMES]
    return select(
        func.grouping(b.kc).label("whole_period"),
        b.queue_id,
        b.user_id,
        b.kc,
        b.kr,
        b.kp,
        b.krp,
        *outcomes,
        func.count().label("tickets"),
    ).group_by(
        func.grouping_sets(
            tuple_(b.kc, b.kr, *outcomes), tuple_(b.queue_id, b.user_id, b.kp, b.krp, *outcomes)
        )
    )


def _percentiles(base: CTE, buckets: int) -> CompoundSelect[*tuple[Any, ...]]:
    """Median and p90 of each response time, per whole period (in total, per queue, per
    agent) and per trend bucket; the ``all_*`` and ``whole_period`` flags say which."""
    b = base.c

    def ranked(
        clock: str,
        minutes: ColumnElement[float],
        period: ColumnElement[int],
        bucket: ColumnElement[int],
    ) -> Select[*tuple[Any, ...]]:
        return (
            select(
                literal(clock).label("clock"),
                func.grouping(b.queue_id).label("all_queues"),
                func.grouping(b.user_id).label("all_agents"),
                func.grouping(bucket).label("whole_period"),
                b.queue_id,
                b.user_id,
                func.coalesce(bucket, period).label("bucket"),
                func.percentile_cont(0.5).within_group(minutes).label("median"),
                func.percentile_cont(0.9).within_group(minutes).label("p90"),
            )
            .where(bucket.between(1, buckets), minutes.is_not(None))
            .group_by(
                func.grouping_sets(
                    tuple_(period),
                    tuple_(b.queue_id, period),
                    tuple_(b.user_id, period),
                    tuple_(bucket),
                )
            )
        )

    first = ranked("first_response", b.first_minutes, b.kp, b.kc)
    return first.union_all(ranked("resolution", b.resolution_minutes, b.krp, b.kr))


def groups(session: Session, query: ReportQuery) -> dict[str, dict[GroupKey, list[Tally]]]:
    """Every group's tallies, counted and with percentiles taken (see ``Counts``)."""
    buckets = len(edges(query)) - 1
    base = _base(query, buckets)
    counts = Counts(trend=tallies(buckets), cells={})
    for row in session.execute(_counts(base)):
        outcomes = [row._mapping[name] for name in _OUTCOMES]
        if row.whole_period:
            cell = counts.cells.get((row.queue_id, row.user_id))
            if cell is None:
                cell = counts.cells[(row.queue_id, row.user_id)] = tallies(1)
            count_ticket(cell, row.kp, row.krp, 1, outcomes, row.tickets)
        else:
            count_ticket(counts.trend, row.kc, row.kr, buckets, outcomes, row.tickets)
    found = counts.groups()
    for row in session.execute(_percentiles(base, buckets)):
        if not row.whole_period:
            group = found["trend"][None]
        elif not row.all_queues:
            group = found["queue"][row.queue_id]
        elif not row.all_agents:
            group = found["agent"][row.user_id]
        else:
            group = found["total"][None]
        tally = group[row.bucket]
        if row.clock == "first_response":
            tally.first_median, tally.first_p90 = row.median, row.p90
        else:
            tally.resolution_median, tally.resolution_p90 = row.median, row.p90
    return found
