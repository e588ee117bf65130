"""Manager reports (roles manager and admin): the SLA report page, its CSV
exports and the JSON form under the API."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, abort, render_template, request
from sqlalchemy import select

from helpdesk.models import Queue, User
from helpdesk.sla import report as sla_report
from helpdesk.sla.query import parse_query
from helpdesk.web.charts import trend_chart
from helpdesk.web.db import get_session, get_settings
from helpdesk.web.login import role_required

bp = Blueprint("reports", __name__, url_prefix="/reports")


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
