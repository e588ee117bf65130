"""The JSON API under /api/v1: bearer tokens, and the tickets a token's user may see."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, g, jsonify, request

from helpdesk.accounts.users import user_for_token
from helpdesk.models import Message, OutboxMail, Ticket, TicketSla
from helpdesk.outbound.outbox import delivery_states
from helpdesk.sla import report as sla_report
from helpdesk.tickets.listing import ListingError, TicketFilter, list_tickets, visible_ticket
from helpdesk.web.db import get_session, get_settings
from helpdesk.web.reports import parse_query

bp = Blueprint("api", __name__, url_prefix="/api/v1")


@bp.errorhandler(400)
@bp.errorhandler(401)
@bp.errorhandler(404)
def _json_error(error):
    response = jsonify(error=error.description if error.code != 404 else "not found")
    response.status_code = error.code
    if error.code == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="helpdesk"'
    return response


@bp.before_request
def _authenticate() -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    user = user_for_token(get_session(), token.strip()) if scheme.lower() == "bearer" else None
    if user is None:
        abort(401, description="a valid bearer token is required")
    g.api_user = user


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def ticket_json(ticket: Ticket) -> dict[str, Any]:
    return {
        "number": ticket.number,
        "subject": ticket.subject,
        "queue": ticket.queue.slug,
        "status": ticket.status,
        "priority": ticket.priority,
        "requester": ticket.requester.email,
        "assignee": ticket.assignee.email if ticket.assignee else None,
        "ccs": [contact.email for contact in ticket.ccs],
        "created_at": _iso(ticket.created_at),
        "updated_at": _iso(ticket.updated_at),
        "sla": sla_json(ticket.sla),
    }


def sla_json(row: TicketSla | None) -> dict[str, Any] | None:
    if row is None or row.policy is None:
        return None
    return {
        "policy": row.policy.name,
        "state": row.state,
        "breached": row.breached,
        "first_response_due": _iso(row.first_response_due)
        if row.first_response_at is None
        else None,
        "first_response_at": _iso(row.first_response_at),
        "next_response_due": _iso(row.next_response_due),
        "resolution_due": _iso(row.resolution_due) if row.resolved_at is None else None,
        "paused_minutes": round(row.paused_minutes, 1),
    }


def delivery_json(row: OutboxMail | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {
        "state": row.state,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "sent_at": _iso(row.sent_at),
    }


def message_json(message: Message, delivery: OutboxMail | None = None) -> dict[str, Any]:
    return {
        "kind": message.kind,
        "from": message.from_address,
        "from_name": message.from_name,
        "to": message.to_addresses,
        "cc": message.cc_addresses,
        "subject": message.subject,
        "text": message.text_body,
        "message_id": message.message_id,
        "created_at": _iso(message.created_at),
        "flags": message.flags,
        "also_addressed": message.also_addressed,
        "attachments": [
            {
                "filename": a.filename,
                "content_type": a.content_type,
                "size": a.size,
                "sha256": a.sha256,
            }
            for a in message.attachments
        ],
        "delivery": delivery_json(delivery) if message.kind == "outbound" else None,
    }


@bp.get("/tickets")
def tickets_index():
    try:
        page = int(request.args.get("page", "1"))
    except ValueError:
        abort(400, description="page must be a whole number")
    filters = TicketFilter(
        queue=request.args.get("queue") or None,
        status=request.args.get("status") or None,
        q=request.args.get("q") or None,
        page=page,
    )
    try:
        result = list_tickets(get_session(), g.api_user, filters)
    except ListingError as exc:
        abort(400, description=str(exc))
    return jsonify(
        tickets=[ticket_json(t) for t in result.tickets],
        page=result.page,
        per_page=result.per_page,
        total=result.total,
    )


@bp.get("/tickets/<int:number>")
def tickets_show(number: int):
    ticket = visible_ticket(get_session(), g.api_user, number)
    if ticket is None:
        abort(404)
    deliveries = delivery_states(get_session(), [m.id for m in ticket.messages])
    messages = [message_json(m, deliveries.get(m.id)) for m in ticket.messages]
    return jsonify(ticket_json(ticket) | {"messages": messages})


@bp.get("/reports/sla")
def reports_sla():
    """The SLA report's figures; same arguments as the report page (manager, admin)."""
    if g.api_user.role not in ("manager", "admin"):
        abort(404)
    settings = get_settings()
    today = datetime.now(ZoneInfo(settings.timezone)).date()
    try:
        query = parse_query(request.args, settings.timezone, today)
    except ValueError as exc:
        abort(400, description=str(exc))
    report = sla_report.build(get_session(), query)
    return jsonify(
        start=_iso(query.start),
        end=_iso(query.end),
        queue=query.queue,
        agent=query.agent,
        bucket=query.bucket,
        totals=asdict(report.totals),
        by_queue={k: asdict(v) for k, v in report.by_queue.items()},
        by_agent={k: asdict(v) for k, v in report.by_agent.items()},
        trend=[{"start": day.isoformat(), **asdict(f)} for day, f in report.trend],
        breaches=[r.number for r in report.breaches],
    )
