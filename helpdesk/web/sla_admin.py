"""Admin pages for SLAs (role admin): business calendars with holidays (typed,
imported from the holidays package or an iCalendar file) and policies."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from sqlalchemy import select
from wtforms import (
    BooleanField,
    IntegerField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from helpdesk.clock import utcnow
from helpdesk.models import PRIORITIES, Queue, SlaCalendar, SlaPolicy
from helpdesk.sla import holidays, setup
from helpdesk.web.db import commit, fresh_session, get_session
from helpdesk.web.login import role_required
from helpdesk.web.security import require_valid

bp = Blueprint("sla_admin", __name__, url_prefix="/admin/sla")
DEFAULT_WEEK = "\n".join(f"{day} 09:00-17:00" for day in ("mon", "tue", "wed", "thu", "fri"))


class CalendarForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=100)])
    timezone = StringField("Time zone", validators=[DataRequired(), Length(max=64)])
    weekly = TextAreaField("Working hours", validators=[Optional()])
    holidays = TextAreaField(
        "Holidays (one per line: 2026-12-24 Christmas Eve)", validators=[Optional()]
    )


class ImportForm(FlaskForm):
    country = StringField("Country code (e.g. DE, US)", validators=[Optional(), Length(max=8)])
    subdivision = StringField("Region (e.g. BY, NY)", validators=[Optional(), Length(max=16)])
    years = StringField("Years (e.g. 2026 2027)", validators=[DataRequired(), Length(max=100)])
    ical = FileField("or an iCalendar file (.ics)")


class PolicyForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=100)])
    position = IntegerField("Order (lowest matching wins)", validators=[NumberRange(0, 100000)])
    queue = SelectField("Queue", choices=[])
    priority = SelectField("Priority", choices=[SelectChoice("", "any"), *PRIORITIES])
    calendar = SelectField("Calendar", choices=[])
    first_response_minutes = IntegerField("First response (minutes)", validators=[Optional()])
    first_response_business = BooleanField("in business time", default=True)
    next_response_minutes = IntegerField("Next response (minutes)", validators=[Optional()])
    next_response_business = BooleanField("in business time", default=True)
    resolution_minutes = IntegerField("Resolution (minutes)", validators=[Optional()])
    resolution_business = BooleanField("in business time", default=True)
    warn_percent = IntegerField(
        "Warn at (% of target)", default=80, validators=[NumberRange(1, 100)]
    )


class ActionForm(FlaskForm):
    pass


@bp.get("")
@role_required("admin")
def index():
    session = get_session()
    return render_template(
        "admin/sla.html",
        calendars=setup.calendars(session),
        policies=setup.policies(session),
        action=ActionForm(),
    )


def _calendar(calendar_id: int | None) -> SlaCalendar | None:
    if calendar_id is None:
        return None
    calendar = get_session().get(SlaCalendar, calendar_id)
    if calendar is None:
        abort(404)
    return calendar


@bp.route("/calendars/new", methods=["GET", "POST"], defaults={"calendar_id": None})
@bp.route("/calendars/<int:calendar_id>", methods=["GET", "POST"])
@role_required("admin")
def calendar_page(calendar_id: int | None):
    session = get_session()
    calendar = _calendar(calendar_id)
    if calendar is None:
        form = CalendarForm(timezone="UTC", weekly=DEFAULT_WEEK)
    else:
        form = CalendarForm(
            name=calendar.name,
            timezone=calendar.timezone,
            weekly=setup.format_weekly(calendar.weekly),
            holidays="\n".join(f"{h.day.isoformat()} {h.name}" for h in calendar.holidays),
        )
    if form.validate_on_submit():
        try:
            saved = setup.save_calendar(
                session, calendar, name=form.name.data or "", timezone=form.timezone.data or "",
                weekly_text=form.weekly.data or "", holidays_text=form.holidays.data or "",
                now=utcnow(),
            )  # fmt: skip
        except setup.SetupError as exc:
            fresh_session()
            calendar = _calendar(calendar_id)
            flash(str(exc), "error")
        else:
            commit()
            flash(f"Saved calendar {saved.name}.", "info")
            return redirect(url_for("sla_admin.calendar_page", calendar_id=saved.id))
    return render_template(
        "admin/sla_calendar.html", calendar=calendar, form=form, import_form=ImportForm()
    )


@bp.post("/calendars/<int:calendar_id>/import")
@role_required("admin")
def import_holidays(calendar_id: int):
    session = get_session()
    calendar = session.get(SlaCalendar, calendar_id) or abort(404)
    form = ImportForm()
    if not form.validate_on_submit():
        abort(400, description="Give the years to import, and a country or an iCalendar file.")
    try:
        years = [int(y) for y in (form.years.data or "").replace(",", " ").split()]
    except ValueError:
        abort(400, description="years must be whole numbers like 2026")
    if not years or any(y < 1900 or y > 2200 for y in years):
        abort(400, description="years must be between 1900 and 2200")
    try:
        if form.ical.data and form.ical.data.filename:
            days = holidays.from_ical(form.ical.data.read(), years)
        elif form.country.data:
            days = holidays.from_country(form.country.data, form.subdivision.data or None, years)
        else:
            abort(400, description="Give a country code or an iCalendar file.")
    except holidays.HolidayError as exc:
        flash(str(exc), "error")
        return redirect(url_for("sla_admin.calendar_page", calendar_id=calendar_id))
    added = holidays.add(session, calendar, days)
    setup.mark_for_reevaluation(session, now=utcnow())
    commit()
    flash(f"Imported {added} holiday(s).", "info")
    return redirect(url_for("sla_admin.calendar_page", calendar_id=calendar_id))


@bp.route("/policies/new", methods=["GET", "POST"], defaults={"policy_id": None})
@bp.route("/policies/<int:policy_id>", methods=["GET", "POST"])
@role_required("admin")
def policy_page(policy_id: int | None):
    session = get_session()
    policy = session.get(SlaPolicy, policy_id) if policy_id is not None else None
    if policy_id is not None and policy is None:
        abort(404)
    form = PolicyForm(obj=policy) if policy else PolicyForm(position=100)
    queues = list(session.scalars(select(Queue).order_by(Queue.slug)))
    form.queue.choices = [SelectChoice("", "any"), *[q.slug for q in queues]]
    form.calendar.choices = [SelectChoice(str(c.id), c.name) for c in setup.calendars(session)]
    if policy is not None and not form.is_submitted():
        form.queue.data = policy.queue.slug if policy.queue else ""
        form.priority.data = policy.priority or ""
        form.calendar.data = str(policy.calendar_id)
    if form.validate_on_submit():
        calendar = session.get(SlaCalendar, int(form.calendar.data or 0))
        queue = next((q for q in queues if q.slug == form.queue.data), None)
        if calendar is None:
            abort(400, description="choose a calendar")
        try:
            saved = setup.save_policy(
                session, policy, name=form.name.data or "", position=form.position.data or 0,
                queue=queue, priority=form.priority.data or None, calendar=calendar,
                first_response_minutes=form.first_response_minutes.data,
                first_response_business=form.first_response_business.data,
                next_response_minutes=form.next_response_minutes.data,
                next_response_business=form.next_response_business.data,
                resolution_minutes=form.resolution_minutes.data,
                resolution_business=form.resolution_business.data,
                warn_percent=form.warn_percent.data or 80, now=utcnow(),
            )  # fmt: skip
        except setup.SetupError as exc:
            policy = fresh_session().get(SlaPolicy, policy_id) if policy_id is not None else None
            flash(str(exc), "error")
        else:
            commit()
            flash(f"Saved policy {saved.name}; open tickets are being re-evaluated.", "info")
            return redirect(url_for("sla_admin.index"))
    return render_template("admin/sla_policy.html", policy=policy, form=form)


@bp.post("/policies/<int:policy_id>/delete")
@role_required("admin")
def policy_delete(policy_id: int):
    require_valid(ActionForm())
    session = get_session()
    policy = session.get(SlaPolicy, policy_id)
    if policy is None:
        abort(404)
    setup.delete_policy(session, policy, now=utcnow())
    commit()
    return redirect(url_for("sla_admin.index"))
