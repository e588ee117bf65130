"""A report's figures, and its ticket rows, as CSV (no formulas for spreadsheets)."""

from __future__ import annotations

import io
from dataclasses import asdict
from datetime import datetime

from helpdesk import export
from helpdesk.sla.report.figures import Figures, Report
from helpdesk.sla.report.tickets import TicketRow


def figures_csv(report: Report) -> str:
    out = io.StringIO()
    names = list(asdict(Figures()))
    writer = export.writer(out)
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
    writer = export.writer(out)
    writer.writerow(names)
    for row in rows:
        values = [getattr(row, n) for n in names]
        writer.writerow([v.isoformat() if isinstance(v, datetime) else v for v in values])
    return out.getvalue()
