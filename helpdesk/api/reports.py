"""API operations for managers: the SLA report's figures (roles manager and admin)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from helpdesk.api.fields import Address, Slug
from helpdesk.api.registry import ApiError, Call, Registry, Reply, Response
from helpdesk.sla import report as sla_report
from helpdesk.sla.query import parse_query

api = Registry()


class ReportQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    period: Literal["day", "week", "month", "range"] = "month"
    start: str | None = Field(None, pattern=r"^\d{4}-\d{2}-\d{2}$", description="YYYY-MM-DD")
    end: str | None = Field(None, pattern=r"^\d{4}-\d{2}-\d{2}$", description="YYYY-MM-DD")
    queue: Slug | None = None
    agent: Address | None = None
    bucket: Literal["day", "week", "month"] | None = None


class SlaReport(BaseModel):
    start: datetime
    end: datetime
    queue: str | None
    agent: str | None
    bucket: str
    totals: dict[str, Any]
    by_queue: dict[str, dict[str, Any]]
    by_agent: dict[str, dict[str, Any]]
    trend: list[dict[str, Any]]
    breaches: list[int] = Field(description="Numbers of the tickets that breached.")


@api.operation(
    "GET",
    "/reports/sla",
    summary="SLA report",
    tag="reports",
    roles=("manager", "admin"),
    query=ReportQuery,
    name="sla_report",
    responses=(Response(200, "The SLA report's figures.", SlaReport),),
)
def sla_report_op(call: Call) -> Reply:
    """The SLA report page's figures: same arguments (``period``, ``start``, ``end``,
    ``queue``, ``agent``, ``bucket``), in the desk's time zone."""
    settings = call.settings
    today = datetime.now(ZoneInfo(settings.timezone)).date()
    args = {k: v for k, v in call.query.model_dump().items() if v is not None}
    try:
        query = parse_query(args, settings.timezone, today)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from exc
    report = sla_report.build(call.session, query)
    body = SlaReport(
        start=query.start,
        end=query.end,
        queue=query.queue,
        agent=query.agent,
        bucket=query.bucket,
        totals=asdict(report.totals),
        by_queue={k: asdict(v) for k, v in report.by_queue.items()},
        by_agent={k: asdict(v) for k, v in report.by_agent.items()},
        trend=[{"start": day.isoformat(), **asdict(f)} for day, f in report.trend],
        breaches=[r.number for r in report.breaches],
    )
    return Reply(body)
