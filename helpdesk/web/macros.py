"""Macros on the web: the admin page (role admin) that keeps them, and applying
one to a ticket (ticket page) or to the tickets selected in a list.

Applying fetches every ticket through the agent's rights (another queue's
ticket is a 404, or left out of a selection) and calls
``helpdesk.automation.macros``; a refused change is not committed.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import login_required
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import (
    FieldList,
    FormField,
    IntegerField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from helpdesk.automation import formshape, macros
from helpdesk.clock import utcnow
from helpdesk.models import Macro, Queue, Ticket
from helpdesk.tickets.listing import parse_id, visible_queue_ids, visible_ticket
from helpdesk.web.db import commit, get_session, get_settings
from helpdesk.web.login import role_required, safe_next, user
from helpdesk.web.rules_admin import MAX_ROWS, ActionForm, ActionRow
from helpdesk.web.security import require_valid

bp = Blueprint("macros_admin", __name__)


class MacroForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    queue = SelectField("Queue", choices=[], validate_choice=False)
    position = IntegerField("Order", default=100, validators=[NumberRange(0, 1_000_000)])
    reply = TextAreaField("Reply (optional)", validators=[Optional(), Length(max=100_000)])
    actions = FieldList(FormField(ActionRow), min_entries=1, max_entries=MAX_ROWS)


def _macro(macro_id: int | None) -> Macro | None:
    if macro_id is None:
        return None
    macro = get_session().get(Macro, macro_id)
    if macro is None:
        abort(404)
    return macro


@bp.get("/admin/macros")
@role_required("admin")
def index():
    return render_template(
        "admin/macros.html", macros=macros.all_macros(get_session()), action=ActionForm()
    )


@bp.route("/admin/macros/new", methods=["GET", "POST"], defaults={"macro_id": None})
@bp.route("/admin/macros/<int:macro_id>", methods=["GET", "POST"])
@role_required("admin")
def macro_page(macro_id: int | None):
    session = get_session()
    macro = _macro(macro_id)
    form = MacroForm()
    slugs = list(session.scalars(select(Queue.slug).order_by(Queue.slug)))
    form.queue.choices = [SelectChoice("", "every queue"), *slugs]
    if not form.is_submitted() and macro is not None:
        form.name.data, form.position.data = macro.name, macro.position
        form.queue.data = macro.queue.slug if macro.queue else ""
        form.reply.data = macro.reply
        while form.actions.entries:
            form.actions.pop_entry()
        for row in formshape.to_shape({}, macro.actions or []).actions:  # type: ignore[union-attr]
            form.actions.append_entry({"kind": row.kind, "value": row.value})
        form.actions.append_entry()
    if form.is_submitted():
        require_valid(ActionForm())
        if request.form.get("do") == "add_action":
            form.actions.append_entry()
        elif not form.validate():
            for name, errors in form.errors.items():
                flash(f"{name}: {'; '.join(map(str, errors))}", "error")
        else:
            rows = [formshape.ActionRow(e.kind.data or "", e.value.data or "")
                    for e in form.actions]  # fmt: skip
            _, actions = formshape.from_shape(formshape.Shape(actions=rows))
            data = {"name": form.name.data, "queue": form.queue.data or None,
                    "position": form.position.data or 0, "reply": form.reply.data or "",
                    "actions": actions}  # fmt: skip
            try:
                saved = macros.save(session, macro, data, now=utcnow())
            except macros.MacroError as exc:
                flash(str(exc), "error")
            else:
                commit()
                flash(f"Saved macro {saved.name}.", "info")
                return redirect(url_for("macros_admin.index"))
    return render_template("admin/macro.html", macro=macro, form=form)


@bp.post("/admin/macros/<int:macro_id>/delete")
@role_required("admin")
def macro_delete(macro_id: int):
    require_valid(ActionForm())
    macro = _macro(macro_id)
    get_session().delete(macro)
    commit()
    return redirect(url_for("macros_admin.index"))


def _chosen(macro_id: str | None) -> Macro:
    found = parse_id(macro_id or "")
    macro = get_session().get(Macro, found) if found is not None else None
    if macro is None:
        abort(400, description="Choose a macro.")
    return macro


@bp.post("/tickets/<int:number>/macro")
@login_required
def apply_one(number: int):
    require_valid(ActionForm())
    session = get_session()
    ticket = visible_ticket(session, user(), number)
    if ticket is None:
        abort(404)
    macro = _chosen(request.form.get("macro"))
    try:
        done = macros.apply(session, ticket, macro, actor=user(), settings=get_settings(),
                            now=utcnow())  # fmt: skip
    except macros.MacroError as exc:
        flash(str(exc), "error")
        return redirect(url_for("tickets.show", number=number))
    commit()
    flash(f"Applied {macro.name}: {'; '.join(done) or 'nothing to change'}.", "info")
    return redirect(url_for("tickets.show", number=number))


@bp.post("/tickets/macro")
@login_required
def apply_selected():
    require_valid(ActionForm())
    session = get_session()
    macro = _chosen(request.form.get("macro"))
    numbers = [n for n in map(parse_id, request.form.getlist("ticket")) if n is not None]
    tickets = list(session.scalars(select(Ticket).where(
        Ticket.number.in_(numbers), Ticket.queue_id.in_(visible_queue_ids(session, user()))
    ))) if numbers else []  # fmt: skip
    try:
        count = macros.apply_many(session, tickets, macro, actor=user(),
                                  settings=get_settings(), now=utcnow())  # fmt: skip
    except macros.MacroError as exc:
        flash(str(exc), "error")
        return redirect(safe_next(request.form.get("back")))
    commit()
    flash(f"Applied {macro.name} to {count} ticket(s).", "info")
    return redirect(safe_next(request.form.get("back")))


@bp.app_template_global()
def macros_for(ticket: Ticket | None = None) -> list[Macro]:
    """The macros offered on a ticket (its queue), or in lists (the user's queues)."""
    session = get_session()
    if ticket is not None:
        return macros.for_queue(session, ticket.queue_id)
    return macros.for_queues(session, visible_queue_ids(session, user()))
