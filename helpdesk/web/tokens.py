"""API tokens in the web app: each user lists, names, creates and revokes their own
at /me/tokens; admins see and revoke everyone's at /admin/tokens.

A new token's secret is shown once, on the page that answers the form (never
stored, never in a redirect or a flash message)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import login_required
from flask_wtf import FlaskForm
from wtforms import SelectChoice, SelectField, StringField
from wtforms.validators import Length, Optional

from helpdesk.accounts import users
from helpdesk.clock import utcnow
from helpdesk.models import ApiToken
from helpdesk.web.db import commit, get_session
from helpdesk.web.login import role_required, user
from helpdesk.web.security import require_valid

bp = Blueprint("tokens", __name__)


class TokenForm(FlaskForm):
    name = StringField("Name (shown in ticket history)", validators=[Optional(), Length(max=100)])
    scope = SelectField(
        "Scope",
        choices=[
            SelectChoice("read", "read: see tickets"),
            SelectChoice("write", "write: also change them"),
        ],
        default="read",
    )


class RevokeForm(FlaskForm):
    pass


@bp.route("/me/tokens", methods=["GET", "POST"])
@login_required
def mine():
    session, me = get_session(), user()
    form = TokenForm()
    secret = None
    if form.validate_on_submit():
        try:
            row, secret = users.issue_token(
                session, me, now=utcnow(), scope=form.scope.data or "read",
                name=form.name.data or "",
            )  # fmt: skip
        except users.UserError as exc:
            abort(400, description=str(exc))
        commit()
        form = TokenForm(formdata=None)
        flash(f"Created {row.name}. Copy the token now: it is not shown again.", "info")
    elif form.is_submitted():
        abort(400, description="The form expired; reload the page and try again.")
    return render_template(
        "tokens.html", tokens=users.tokens_of(session, me), form=form, secret=secret,
        revoke=RevokeForm(), everyone=False,
    )  # fmt: skip


@bp.post("/me/tokens/<int:token_id>/revoke")
@login_required
def revoke_mine(token_id: int):
    require_valid(RevokeForm())
    row = get_session().get(ApiToken, token_id)
    if row is None or row.user_id != user().id:
        abort(404)
    users.revoke_token(get_session(), row, now=utcnow())
    commit()
    flash(f"Revoked {row.name}.", "info")
    return redirect(url_for("tokens.mine"))


@bp.get("/admin/tokens")
@role_required("admin")
def everyone():
    return render_template(
        "tokens.html", tokens=users.tokens_of(get_session()), form=None, secret=None,
        revoke=RevokeForm(), everyone=True,
    )  # fmt: skip


@bp.post("/admin/tokens/<int:token_id>/revoke")
@role_required("admin")
def revoke_any(token_id: int):
    require_valid(RevokeForm())
    row = get_session().get(ApiToken, token_id)
    if row is None:
        abort(404)
    users.revoke_token(get_session(), row, now=utcnow())
    commit()
    flash(f"Revoked {row.name} of {row.user.email}.", "info")
    return redirect(url_for("tokens.everyone"))
