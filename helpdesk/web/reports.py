"""Manager reports (roles manager and admin): the SLA report page, its CSV
exports and the JSON form under the API."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, abort, render_template, request
from sqlalchemy import select

from helpdesk.models import Queue, User
from helpdesk.sla import report as sla_report
from helpdesk.web.charts import trend_chart
from helpdesk.web.db import get_session, get_settings
from helpdesk.web.login import role_required

bp = Blueprint("reports", __name__, url_prefix="/reports")


def parse_query(args, timezone: str, today: date) -> sla_report.ReportQuery:
    """A report query from request arguments: ``period`` (day, week, month, range)
    with ``start``/``end`` dates (end inclusive), ``queue``, ``agent``, ``bucket``."""
    zone = ZoneInfo(timezone)
    period = args.get("period", "month")
    try:
        start_day = date.fromisoformat(args["start"]) if args.get("start") else None
        end_day = date.fromisoformat(args["end"]) if args.get("end") else None
    except ValueError as exc:
        raise ValueError("dates must look like 2026-11-26") from exc
    if period == "day":
        start_day = start_day or today
        end_day = start_day
        bucket = "day"
    elif period == "week":
        start_day = (start_day or today) - timedelta(days=(start_day or today).weekday())
        end_day = start_day + timedelta(days=6)
        bucket = "day"
    elif period == "month":
        start_day = (start_day or today).replace(day=1)
        end_day = (start_day.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
        bucket = "day"
    elif period == "range":
        start_day = start_day or today - timedelta(days=90)
        end_day = end_day or today
        if end_day < start_day:
            raise ValueError("the end date is before the start date")
        if (end_day - start_day).days > 3 * 366:
            raise ValueError("a report spans at most three years")
        bucket = args.get("bucket") or ("week" if (end_day - start_day).days <= 120 else "month")
    else:
        raise ValueError("period must be day, week, month or range")
    if bucket not in sla_report.BUCKETS:
        raise ValueError("bucket must be day, week or month")
    start = datetime.combine(start_day, datetime.min.time(), zone).astimezone(UTC)
    end = datetime.combine(end_day + timedelta(days=1), datetime.min.time(), zone).astimezone(UTC)
    return sla_report.ReportQuery(
        start=start, end=end, queue=args.get("queue") or None, agent=args.get("agent") or None,
        bucket=bucket, timezone=timezone,
    )  # fmt: skip


def _query() -> sla_report.ReportQuery:
    settings = get_settings()
    today = datetime.now(ZoneInfo(settings.timezone)).date()
    try:
        return parse_query(request.args, settings.timezone, today)
    except ValueError as exc:
        abort(400, description=str(exc))


@bp.get("/sla")
@role_required("manager", "admin")
def sla():
    session = get_session()
    query = _query()
    report = sla_report.build(session, query)
    labels = [day.isoformat() for day, _ in report.trend]
    chart = trend_chart(
        labels,
        {
            "created": [float(f.created) for _, f in report.trend],
            "resolved": [float(f.resolved) for _, f in report.trend],
        },
        ("first response within target %", [f.first_response_within for _, f in report.trend]),
    )
    return render_template(
        "reports/sla.html",
        report=report,
        chart=chart,
        queues=list(session.scalars(select(Queue).order_by(Queue.slug))),
        agents=list(session.scalars(select(User).where(User.active).order_by(User.email))),
        args=request.args,
    )


@bp.get("/sla.csv")
@role_required("manager", "admin")
def sla_csv():
    session = get_session()
    query = _query()
    if request.args.get("kind") == "tickets":
        body = sla_report.tickets_csv(sla_report.ticket_rows(session, query))
        name = "sla-tickets.csv"
    else:
        body = sla_report.figures_csv(sla_report.build(session, query))
        name = "sla-figures.csv"
    return Response(
        body,
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
