"""The admin "Mail" page: the intake pipe at a glance (counts by state, the oldest
unapplied message), each failed or unparsed message with its reason, a
download of the original, and reprocessing of failed mail."""

from __future__ import annotations

from flask import Blueprint, Response, abort, flash, redirect, render_template, url_for
from flask_wtf import FlaskForm

from helpdesk.clock import utcnow
from helpdesk.intake import pipe
from helpdesk.web.db import commit, get_session
from helpdesk.web.login import role_required
from helpdesk.web.security import require_valid

bp = Blueprint("mail_admin", __name__, url_prefix="/admin/mail")


class ActionForm(FlaskForm):
    pass


@bp.get("")
@role_required("admin")
def index():
    state = pipe.status(get_session())
    return render_template(
        "admin/mail.html", state=state, waiting=state.waiting_for(utcnow()), action=ActionForm()
    )


@bp.get("/<int:raw_mail_id>.eml")
@role_required("admin")
def original(raw_mail_id: int):
    content = pipe.original(get_session(), raw_mail_id)
    if content is None:
        abort(404)
    response = Response(content, mimetype="application/octet-stream")
    response.headers["Content-Disposition"] = f'attachment; filename="raw-mail-{raw_mail_id}.eml"'
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.post("/reprocess")
@role_required("admin")
def reprocess_all():
    require_valid(ActionForm())
    count = pipe.reprocess(get_session())
    commit()
    flash(f"{count} failed messages are back in the queue.", "info")
    return redirect(url_for("mail_admin.index"))


@bp.post("/<int:raw_mail_id>/reprocess")
@role_required("admin")
def reprocess_one(raw_mail_id: int):
    require_valid(ActionForm())
    session = get_session()
    if pipe.original(session, raw_mail_id) is None:
        abort(404)
    if pipe.reprocess(session, [raw_mail_id]):
        commit()
        flash(f"Raw mail {raw_mail_id} is back in the queue.", "info")
    else:
        flash(f"Raw mail {raw_mail_id} has not failed; nothing to do.", "info")
    return redirect(url_for("mail_admin.index"))
