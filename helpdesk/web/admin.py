"""Admin pages (role admin): users, queues and their addresses, canned responses;
and every user's own notification settings at /me."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import (
    BooleanField,
    EmailField,
    PasswordField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, Optional

from helpdesk.accounts import signin, users
from helpdesk.clock import utcnow
from helpdesk.models import ROLES, CannedResponse, Queue, User
from helpdesk.tickets import canned, queues
from helpdesk.web.db import commit, fresh_session, get_session
from helpdesk.web.login import role_required, user
from helpdesk.web.security import require_valid

bp = Blueprint("admin", __name__)


class UserForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    name = StringField("Name", validators=[Optional(), Length(max=200)])
    role = SelectField("Role", choices=list(ROLES))
    queues = SelectMultipleField("Queues", choices=[])
    password = PasswordField("New password", validators=[Optional(), Length(min=8, max=200)])


class QueueForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    email_address = StringField("Sends from", validators=[DataRequired(), Length(max=320)])
    extra_addresses = TextAreaField("Also receives at (one per line)", validators=[Optional()])
    closed_reply_policy = SelectField(
        "A reply to a closed ticket",
        choices=[
            SelectChoice("reopen", "reopens it"),
            SelectChoice("new_ticket", "opens a new, linked ticket"),
        ],
    )


class CannedForm(FlaskForm):
    title = StringField("Title", validators=[DataRequired(), Length(max=200)])
    body = TextAreaField("Text", validators=[DataRequired(), Length(max=20000)])
    queue = SelectField("Queue", choices=[])


class ActionForm(FlaskForm):
    pass


class NotificationForm(FlaskForm):
    notify_new_ticket = BooleanField("A new ticket arrives in one of my queues")
    notify_assigned = BooleanField("A ticket is assigned to me")
    notify_customer_reply = BooleanField("A customer replies on a ticket assigned to me")


def _queue_choices() -> list[SelectChoice]:
    rows = get_session().scalars(select(Queue).order_by(Queue.slug))
    return [SelectChoice(q.slug, q.name) for q in rows]


@bp.route("/admin/users", methods=["GET", "POST"])
@role_required("admin")
def users_page():
    session = get_session()
    form = UserForm()
    form.queues.choices = _queue_choices()
    if form.validate_on_submit():
        try:
            users.add_or_update(
                session, form.email.data or "", role=form.role.data or "agent",
                queue_slugs=list(form.queues.data or []), name=form.name.data or "",
                password=form.password.data or None, now=utcnow(),
                keep_session=current_user.session_id,  # a change ends all other sessions
            )  # fmt: skip
        except users.UserError as exc:
            session = fresh_session()
            flash(str(exc), "error")
        else:
            commit()
            flash(f"Saved {form.email.data}.", "info")
            return redirect(url_for("admin.users_page"))
    everyone = list(session.scalars(select(User).order_by(User.email)))
    return render_template("admin/users.html", form=form, users=everyone, action=ActionForm())


@bp.post("/admin/users/<int:user_id>/deactivate")
@role_required("admin")
def deactivate(user_id: int):
    require_valid(ActionForm())
    session = get_session()
    target = session.get(User, user_id)
    if target is None:
        abort(404)
    if target.id == user().id:
        flash("You cannot deactivate yourself.", "error")
        return redirect(url_for("admin.users_page"))
    signin.deactivate(session, target)
    commit()
    flash(f"Deactivated {target.email}; their sessions and tokens no longer work.", "info")
    return redirect(url_for("admin.users_page"))


@bp.post("/admin/users/<int:user_id>/activate")
@role_required("admin")
def activate(user_id: int):
    require_valid(ActionForm())
    target = get_session().get(User, user_id)
    if target is None:
        abort(404)
    target.active = True
    commit()
    return redirect(url_for("admin.users_page"))


@bp.route("/admin/queues", methods=["GET"])
@role_required("admin")
def queues_page():
    rows = list(get_session().scalars(select(Queue).order_by(Queue.slug)))
    return render_template("admin/queues.html", queues=rows)


@bp.route("/admin/queues/<slug>", methods=["GET", "POST"])
@role_required("admin")
def queue_page(slug: str):
    session = get_session()
    queue = queues.by_slug(session, slug)
    if queue is None:
        abort(404)
    extra = "\n".join(a.address for a in queue.addresses if a.address != queue.email_address)
    form = QueueForm(
        name=queue.name, email_address=queue.email_address, extra_addresses=extra,
        closed_reply_policy=queue.closed_reply_policy,
    )  # fmt: skip
    if form.validate_on_submit():
        try:
            queues.update(
                session, queue, name=form.name.data or "",
                email_address=form.email_address.data or "",
                closed_reply_policy=form.closed_reply_policy.data or "reopen",
                extra_addresses=(form.extra_addresses.data or "").splitlines(),
            )  # fmt: skip
        except queues.QueueError as exc:
            queue = queues.by_slug(fresh_session(), slug)
            flash(str(exc), "error")
        else:
            commit()
            flash(f"Saved queue {slug}.", "info")
            return redirect(url_for("admin.queues_page"))
    return render_template("admin/queue.html", queue=queue, form=form)


@bp.route("/admin/canned", methods=["GET", "POST"])
@role_required("admin")
def canned_page():
    session = get_session()
    form = CannedForm()
    form.queue.choices = [SelectChoice("", "every queue"), *_queue_choices()]
    if form.validate_on_submit():
        queue = queues.by_slug(session, form.queue.data) if form.queue.data else None
        try:
            canned.create(
                session, title=form.title.data or "", body=form.body.data or "", queue=queue,
                now=utcnow(),
            )  # fmt: skip
        except canned.CannedError as exc:
            flash(str(exc), "error")
        else:
            commit()
            return redirect(url_for("admin.canned_page"))
    return render_template(
        "admin/canned.html", form=form, responses=canned.all_responses(session), action=ActionForm()
    )


@bp.post("/admin/canned/<int:response_id>/delete")
@role_required("admin")
def canned_delete(response_id: int):
    require_valid(ActionForm())
    session = get_session()
    row = session.get(CannedResponse, response_id)
    if row is None:
        abort(404)
    canned.delete(session, row)
    commit()
    return redirect(url_for("admin.canned_page"))


@bp.route("/me", methods=["GET", "POST"])
@login_required
def me():
    me_user = user()
    form = NotificationForm(obj=me_user)
    if request.method == "POST":
        require_valid(form)
        me_user.notify_new_ticket = form.notify_new_ticket.data
        me_user.notify_assigned = form.notify_assigned.data
        me_user.notify_customer_reply = form.notify_customer_reply.data
        commit()
        flash("Notification settings saved.", "info")
        return redirect(url_for("admin.me"))
    return render_template("me.html", form=form)
