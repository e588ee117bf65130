"""The period, queue, agent and bucket of an SLA report, from a request's arguments
(the report page, its CSV and the API take the same ones)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from helpdesk.sla import report as sla_report


def parse_query(args: Mapping[str, str], timezone: str, today: date) -> sla_report.ReportQuery:
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
