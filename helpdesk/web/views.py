"""Ticket lists: per queue, mine, unassigned and everything visible; filters,
sorting, pagination, sidebar counts, and bulk triage of selected tickets."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_login import login_required
from flask_wtf import FlaskForm

from helpdesk.clock import utcnow
from helpdesk.models import PRIORITIES, STATUSES
from helpdesk.tickets import bulk
from helpdesk.tickets.listing import (
    SLA_STATES,
    ListingError,
    NoSuchQueue,
    TicketFilter,
    list_tickets,
    parse_id,
    sidebar_counts,
    visible_queues,
)
from helpdesk.web.db import commit, get_session
from helpdesk.web.login import safe_next, user
from helpdesk.web.security import require_valid

bp = Blueprint("views", __name__)

VIEW_TITLES = {"mine": "My tickets", "unassigned": "Unassigned", "all": "Everything I can see"}


@bp.app_context_processor
def sidebar():
    from flask_login import current_user

    if not current_user.is_authenticated:
        return {}
    if "sidebar" not in g:
        session = get_session()
        g.sidebar = {
            "queues": visible_queues(session, user()),
            "counts": sidebar_counts(session, user()),
            "me": user(),
        }
    return {"sidebar": g.sidebar}


@bp.app_template_global()
def url_with(**changes: object) -> str:
    """This page's URL with some query arguments changed."""
    args: dict[str, Any] = {
        **request.args.to_dict(),
        **{k: str(v) for k, v in changes.items()},
        **(request.view_args or {}),  # the page's own path stays
    }
    return url_for(request.endpoint or "views.index", **args)


@bp.app_template_filter("sla_text")
def sla_text(row, now=None) -> str:
    """``due in 2h 05m``, ``overdue by 40m``, ``paused``, ``met``, or an empty string."""
    if row is None or row.policy_id is None:
        return ""
    if row.state == "paused":
        return "paused"
    if row.due_at is None:
        return "breached" if row.breached else "met"
    delta = (row.due_at - (now or utcnow())).total_seconds() / 60
    text = f"{int(abs(delta) // 60)}h {int(abs(delta) % 60):02d}m"
    return f"due in {text}" if delta >= 0 else f"overdue by {text}"


class BulkForm(FlaskForm):
    pass


def _filters(view: str, queue: str | None) -> TicketFilter:
    args = request.args
    try:
        page = int(args.get("page", "1"))
    except ValueError:
        abort(400, description="page must be a whole number")
    return TicketFilter(
        view=view,
        queue=queue,
        status=args.get("status", "active") or None,
        priority=args.get("priority") or None,
        assignee=args.get("assignee") or None,
        tag=args.get("tag") or None,
        sla=args.get("sla") or None,
        q=args.get("q") or None,
        sort=args.get("sort", "updated"),
        descending=args.get("dir", "desc") != "asc",
        page=page,
    )


def _render(view: str, title: str, queue: str | None = None):
    filters = _filters(view, queue)
    try:
        page = list_tickets(get_session(), user(), filters)
    except NoSuchQueue:
        abort(404)
    except ListingError as exc:
        abort(400, description=str(exc))
    session = get_session()
    return render_template(
        "list.html",
        title=title,
        page=page,
        filters=filters,
        statuses=STATUSES,
        priorities=PRIORITIES,
        sla_states=SLA_STATES,
        queues=visible_queues(session, user()),
        agents=bulk.assignable_agents(session, user()),
        form=BulkForm(),
    )


@bp.get("/")
@login_required
def index():
    return redirect(url_for("views.view", name="mine"))


@bp.get("/views/<name>")
@login_required
def view(name: str):
    if name not in VIEW_TITLES:
        abort(404)
    return _render(name, VIEW_TITLES[name])


@bp.get("/queues/<slug>")
@login_required
def queue(slug: str):
    return _render("queue", slug, queue=slug)


@bp.get("/search")
@login_required
def search():
    return _render("all", "Search")


@bp.post("/tickets/bulk")
@login_required
def bulk_update():
    form = BulkForm()
    require_valid(form)
    numbers = [n for n in map(parse_id, request.form.getlist("ticket")) if n is not None]
    try:
        changed = bulk.apply(
            get_session(), user(), numbers,
            action=request.form.get("action", ""), value=request.form.get("value", ""),
            now=utcnow(),
        )  # fmt: skip
    except bulk.BulkError as exc:
        flash(str(exc), "error")  # nothing is committed
        return redirect(safe_next(request.form.get("back")))
    commit()
    flash(f"Updated {changed} ticket(s).", "info")
    return redirect(safe_next(request.form.get("back")))
