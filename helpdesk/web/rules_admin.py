"""Admin pages for automation rules (role admin): the list (enable, disable,
reorder, delete), the rule form (conditions and actions as rows, not JSON),
its preview and its execution log.

The form posts one of several buttons (``do``): ``save``, ``preview``,
``check`` (one ticket), or add a row (``add_condition``, ``add_also``,
``add_action``); every button but save shows the form again with what was
typed. Building the rule from the rows and checking it is
``helpdesk.automation`` (``formshape``, ``service``, ``preview``).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import (
    BooleanField,
    FieldList,
    Form,
    FormField,
    IntegerField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from helpdesk.automation import formshape, preview, service
from helpdesk.automation.actions import mail_templates
from helpdesk.automation.schema import FIELDS, TRIGGERS, SpecError, parse_rule
from helpdesk.clock import utcnow
from helpdesk.models import Queue, Rule
from helpdesk.tickets.lifecycle import by_number
from helpdesk.web.db import commit, get_session
from helpdesk.web.login import role_required
from helpdesk.web.security import require_valid

bp = Blueprint("rules_admin", __name__, url_prefix="/admin/rules")
MAX_ROWS = 40
MODES = [SelectChoice("all", "all"), SelectChoice("any", "any")]


class ConditionRow(Form):
    field = SelectField("Field", choices=[SelectChoice("", "—"), *FIELDS], validate_choice=False)
    op = SelectField("Operator", choices=list(formshape.OPERATORS), validate_choice=False)
    value = StringField("Value", validators=[Optional(), Length(max=2000)])


class ActionRow(Form):
    kind = SelectField(
        "Action",
        choices=[SelectChoice("", "—")]
        + [SelectChoice(k, label) for k, label in formshape.ACTION_KINDS.items()],
        validate_choice=False,
    )
    value = TextAreaField("Value", validators=[Optional(), Length(max=20000)])


class RuleForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    enabled = BooleanField("Enabled")
    position = IntegerField("Order", default=100, validators=[NumberRange(0, 1_000_000)])
    trigger = SelectField("When", choices=list(TRIGGERS))
    match = SelectField("Match", choices=MODES)
    conditions = FieldList(FormField(ConditionRow), min_entries=1, max_entries=MAX_ROWS)
    also_match = SelectField("and also", choices=list(reversed(MODES)))
    also = FieldList(FormField(ConditionRow), min_entries=0, max_entries=MAX_ROWS)
    actions = FieldList(FormField(ActionRow), min_entries=1, max_entries=MAX_ROWS)
    ticket = StringField("Ticket number", validators=[Optional(), Length(max=12)])


class ActionForm(FlaskForm):
    pass


def _rule(rule_id: int | None) -> Rule | None:
    if rule_id is None:
        return None
    rule = get_session().get(Rule, rule_id)
    if rule is None:
        abort(404)
    return rule


def _fill(form: RuleForm, rule: Rule) -> bool:
    """Put a stored rule into the form; False if its conditions nest too deep for it."""
    shape = formshape.to_shape(rule.conditions, rule.actions)
    form.name.data, form.enabled.data = rule.name, rule.enabled
    form.position.data, form.trigger.data = rule.position, rule.trigger
    if shape is None:
        return False
    form.match.data, form.also_match.data = shape.match, shape.also_match
    for entries, rows in ((form.conditions, shape.rows), (form.also, shape.also_rows)):
        while entries.entries:
            entries.pop_entry()
        for row in rows:
            entries.append_entry({"field": row.field, "op": row.op, "value": row.value})
    while form.actions.entries:
        form.actions.pop_entry()
    for action in shape.actions:
        form.actions.append_entry({"kind": action.kind, "value": action.value})
    return True


def _shape(form: RuleForm) -> formshape.Shape:
    def rows(entries: FieldList) -> list[formshape.Row]:
        return [formshape.Row(e.field.data or "", e.op.data or "", e.value.data or "")
                for e in entries]  # fmt: skip

    return formshape.Shape(
        match=form.match.data or "all",
        rows=rows(form.conditions),
        also_match=form.also_match.data or "any",
        also_rows=rows(form.also),
        actions=[formshape.ActionRow(e.kind.data or "", e.value.data or "") for e in form.actions],
    )


def _data(form: RuleForm) -> dict[str, Any]:
    conditions, actions = formshape.from_shape(_shape(form))
    return {
        "name": form.name.data or "",
        "enabled": bool(form.enabled.data),
        "position": form.position.data or 0,
        "trigger": form.trigger.data,
        "conditions": conditions,
        "actions": actions,
    }


@bp.get("")
@role_required("admin")
def index():
    return render_template(
        "admin/rules.html", rules=service.all_rules(get_session()), action=ActionForm()
    )


@bp.route("/new", methods=["GET", "POST"], defaults={"rule_id": None})
@bp.route("/<int:rule_id>", methods=["GET", "POST"])
@role_required("admin")
def rule_page(rule_id: int | None):
    session = get_session()
    rule = _rule(rule_id)
    form = RuleForm()
    fits = True
    if not form.is_submitted():
        if rule is not None:
            fits = _fill(form, rule)
        else:
            form.also.append_entry()
    results: dict[str, Any] = {}
    if form.is_submitted():
        require_valid(ActionForm())  # the CSRF token; the rule itself is checked below
        do = request.form.get("do", "save")
        if do in ("add_condition", "add_also", "add_action"):
            entries = {"add_condition": form.conditions, "add_also": form.also,
                       "add_action": form.actions}[do]  # fmt: skip
            if len(entries.entries) < MAX_ROWS:
                entries.append_entry()
        elif do in ("preview", "check"):
            results = _try(form, rule, do)
        elif not form.validate():
            for name, errors in form.errors.items():
                flash(f"{name}: {'; '.join(map(str, errors))}", "error")
        else:
            try:
                saved = service.save(session, rule, _data(form), now=utcnow())
            except service.RuleError as exc:
                flash(str(exc), "error")
            else:
                commit()
                flash(f"Saved rule {saved.name}.", "info")
                return redirect(url_for("rules_admin.rule_page", rule_id=saved.id))
    return render_template(
        "admin/rule.html", rule=rule, form=form, fits=fits, results=results,
        templates=mail_templates(),
        queues=list(session.scalars(select(Queue.slug).order_by(Queue.slug))),
        log=preview.log(session, rule.id, rule.trigger, limit=50) if rule else [],
    )  # fmt: skip


def _try(form: RuleForm, rule: Rule | None, do: str) -> dict[str, Any]:
    """Preview, or check one ticket, for what is in the form (not saved)."""
    session = get_session()
    try:
        spec = parse_rule({**_data(form), "name": form.name.data or "(unsaved)"})
    except SpecError as exc:
        flash(str(exc), "error")
        return {}
    now = utcnow()
    rule_id = rule.id if rule is not None else None
    if do == "check":
        number = (form.ticket.data or "").strip().lstrip("#")
        ticket = by_number(session, int(number)) if number.isdigit() else None
        if ticket is None:
            flash("No such ticket.", "error")
            return {}
        return {"check": (ticket.number, preview.check_ticket(session, spec, ticket, now=now))}
    if spec.trigger == "time":
        lines, total = preview.time_preview(session, spec, now=now, rule_id=rule_id)
        return {"time": lines, "total": total}
    lines = preview.event_preview(session, spec, rule_id=rule_id)
    return {"events": lines, "acting": sum(1 for line in lines if line.acted)}


def _act(rule_id: int, change) -> Any:
    require_valid(ActionForm())
    session = get_session()
    rule = _rule(rule_id)
    assert rule is not None
    change(session, rule)
    commit()
    return redirect(url_for("rules_admin.index"))


@bp.post("/<int:rule_id>/enable")
@role_required("admin")
def enable(rule_id: int):
    return _act(rule_id, lambda s, r: service.set_enabled(s, r, True, now=utcnow()))


@bp.post("/<int:rule_id>/disable")
@role_required("admin")
def disable(rule_id: int):
    return _act(rule_id, lambda s, r: service.set_enabled(s, r, False, now=utcnow()))


@bp.post("/<int:rule_id>/up")
@role_required("admin")
def up(rule_id: int):
    return _act(rule_id, lambda s, r: service.move(s, r, -1, now=utcnow()))


@bp.post("/<int:rule_id>/down")
@role_required("admin")
def down(rule_id: int):
    return _act(rule_id, lambda s, r: service.move(s, r, 1, now=utcnow()))


@bp.post("/<int:rule_id>/delete")
@role_required("admin")
def delete(rule_id: int):
    return _act(rule_id, lambda s, r: service.delete(s, r))
