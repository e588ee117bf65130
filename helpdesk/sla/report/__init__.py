"""SLA reports for managers: per queue, agent and period, from the stored clocks.

``build`` answers a ``ReportQuery`` with a ``Report``: the figures
(``figures``, which also defines them) of the whole period, per queue, per
agent and per trend bucket (``period``), and the breached tickets
(``tickets``). Each backend counts the tickets in scope its own way
(``sqlite``: one pass in Python; ``postgres``: counts and percentiles in SQL)
into the same tallies, with the same ``figures.count_ticket``; ``csv_export``
writes reports and ticket rows as CSV.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.models import Queue, User
from helpdesk.sla.report import postgres, sqlite
from helpdesk.sla.report.csv_export import figures_csv, tickets_csv
from helpdesk.sla.report.figures import Figures, Report, figures_of, percentile
from helpdesk.sla.report.period import BUCKETS, ReportQuery, bucket_bounds, buckets
from helpdesk.sla.report.tickets import TicketRow, breach_rows, ticket_rows

__all__ = [
    "BUCKETS",
    "Figures",
    "Report",
    "ReportQuery",
    "TicketRow",
    "buckets",
    "build",
    "figures_csv",
    "percentile",
    "ticket_rows",
    "tickets_csv",
]


def build(session: Session, query: ReportQuery) -> Report:
    """The report for ``query``."""
    if query.bucket not in BUCKETS:
        raise ValueError(f"bucket must be one of {', '.join(BUCKETS)}")
    if query.end <= query.start:
        raise ValueError("the period must end after it starts")
    backend = sqlite if session.get_bind().dialect.name == "sqlite" else postgres
    groups = backend.groups(session, query)
    slugs = dict(session.execute(select(Queue.id, Queue.slug)).all())
    user_ids = [key for key in groups["agent"] if key is not None]
    emails = dict(session.execute(select(User.id, User.email).where(User.id.in_(user_ids))).all())
    report = Report(query, figures_of(groups["total"][None])[0])
    report.by_queue = dict(
        sorted((slugs[key], figures_of(group)[0]) for key, group in groups["queue"].items())
    )
    report.by_agent = dict(
        sorted(
            (emails[key] if key is not None else "(unassigned)", figures_of(group)[0])
            for key, group in groups["agent"].items()
        )
    )
    days = [day for day, _, _ in bucket_bounds(query)]
    report.trend = list(zip(days, figures_of(groups["trend"][None]), strict=True))
    report.breaches = breach_rows(session, query)
    return report
