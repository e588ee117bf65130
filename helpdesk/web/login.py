"""Signing in and out (Flask-Login over server-side sessions), and role checks."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import (
    Blueprint,
    Flask,
    abort,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import LoginManager, current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired

from helpdesk.accounts import signin
from helpdesk.accounts.sessions import stored_id
from helpdesk.clock import utcnow
from helpdesk.models import User, WebSession
from helpdesk.web.db import commit, get_session, recorder
from helpdesk.web.security import require_valid

bp = Blueprint("login", __name__)


class SignedIn:
    """What Flask-Login keeps: the server-side session id and its user."""

    is_authenticated = True
    is_active = True
    is_anonymous = False

    def __init__(self, session_id: str, user: User) -> None:
        self.session_id = session_id
        self.user = user

    def get_id(self) -> str:
        return self.session_id


def client_fingerprint() -> str:
    """What "strong" session protection binds a session to: the client's address as
    the app trusts it (``web.proxy``) and its User-Agent. Flask-Login's own reads the
    first ``X-Forwarded-For`` entry, which any client can write."""
    client = f"{request.remote_addr}|{request.headers.get('User-Agent', '')}"
    return hashlib.sha512(client.encode()).hexdigest()


def init_app(app: Flask) -> None:
    manager = LoginManager(app)
    manager.login_view = "login.login"
    manager.session_protection = "strong"
    manager._session_identifier_generator = client_fingerprint  # no public hook in 0.6

    @manager.user_loader
    def load(session_id: str) -> SignedIn | None:
        """The signed-in user; writes nothing in the request (a GET must not write):
        the session's last use is noted for the background recorder instead."""
        session, now = get_session(), utcnow()
        with session.no_autoflush:
            user = signin.session_user(session, session_id, now=now)
            for row in [obj for obj in session.dirty if isinstance(obj, WebSession)]:
                session.expire(row, ["last_seen_at"])  # drop the in-request change
        if user is None:
            return None
        recorder().web_session(stored_id(session_id), now)
        return SignedIn(session_id, user)


def user() -> User:
    return current_user.user


def role_required(*roles: str) -> Callable[..., Any]:
    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        @login_required
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if user().role not in roles:
                abort(404)
            return view(*args, **kwargs)

        return wrapped

    return decorator


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])


def safe_next(target: str | None) -> str:
    """``target`` if it is a path on this site, else the start page. Browsers drop tabs
    and newlines inside a URL and read a backslash as a slash, so ``/<TAB>/evil.example``
    would leave the site: control characters and backslashes are refused too."""
    if (
        target
        and target.startswith("/")
        and not target.startswith("//")
        and not any(ord(c) < 32 or c in "\\\x7f" for c in target)
    ):
        return target
    return url_for("views.index")


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        try:
            started = signin.sign_in(
                get_session(), form.email.data or "", form.password.data or "",
                remote_addr=request.remote_addr or "", now=utcnow(),
            )  # fmt: skip
        except signin.Throttled:
            flash("Too many failed sign-ins. Wait a few minutes and try again.", "error")
            return render_template("login.html", form=form), 429
        commit()
        if started is not None:
            session.clear()  # rotate: nothing from before sign-in survives
            login_user(SignedIn(*started))
            return redirect(safe_next(request.args.get("next")))
        flash("Wrong email or password.", "error")
        status = 401
    return render_template("login.html", form=form), status


class LogoutForm(FlaskForm):
    pass


@bp.post("/logout")
@login_required
def logout():
    form = LogoutForm()
    require_valid(form)
    signin.sign_out(get_session(), current_user.session_id)
    commit()
    logout_user()
    session.clear()
    return redirect(url_for("login.login"))
