"""The web app: ``create_app`` builds it; importing this package does nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask, render_template
from flask_wtf.csrf import CSRFProtect
from werkzeug.routing import IntegerConverter

from helpdesk import keys
from helpdesk.db import make_engine, session_factory
from helpdesk.resources import resource_dir
from helpdesk.settings import Settings
from helpdesk.subscribers import standard
from helpdesk.tickets.dispatch import Dispatcher, attach
from helpdesk.tickets.listing import MAX_ID
from helpdesk.tickets.presence import Recorder
from helpdesk.web import errors
from helpdesk.web.proxy import TrustedProxies


class IdConverter(IntegerConverter):
    """``<int:...>`` in every route: only numbers a database id can hold, so a larger
    one matches no route (a 404 like any missing ticket), never a database error."""

    def __init__(self, map, *args, **kwargs):
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


def create_app(
    settings: Settings | None = None, engine: Any = None, dispatcher: Dispatcher | None = None
) -> Flask:
    """The app; its sessions carry ``dispatcher`` (default: the standard subscribers)."""
    settings = (settings or Settings.load()).with_secret_key()
    templates = resource_dir("templates")
    app = Flask(
        "helpdesk",
        template_folder=str(templates),
        static_folder=str(templates / "static"),
        instance_path=str(settings.instance_path.resolve()),
    )
    app.config.update(
        # Each its own key, derived from HELPDESK_SECRET_KEY (helpdesk.keys).
        SECRET_KEY=keys.derive(settings.secret_key, keys.SESSION),
        WTF_CSRF_SECRET_KEY=keys.derive(settings.secret_key, keys.CSRF),
        # Over HTTPS the cookie is Secure and __Host- (so: Path=/, no Domain), which a
        # plain-HTTP page or a sibling subdomain can neither set nor overwrite.
        SESSION_COOKIE_NAME=("__Host-" if settings.https else "") + "helpdesk_session",
        SESSION_COOKIE_SECURE=settings.https,
        SESSION_COOKIE_PATH="/",
        SESSION_COOKIE_DOMAIN=None,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        MAX_CONTENT_LENGTH=settings.max_message_size,
        WTF_CSRF_TIME_LIMIT=None,
    )
    if settings.trusted_proxy_networks:
        # Flask's documented way to wrap the WSGI app in middleware:
        app.wsgi_app = TrustedProxies(app.wsgi_app, settings.trusted_proxy_networks)  # type: ignore[method-assign]
    app.url_map.converters["int"] = IdConverter  # before any route is added
    engine = engine or make_engine(settings)
    dispatcher = dispatcher or standard(settings)
    app.extensions["helpdesk"] = {
        "settings": settings,
        "engine": engine,
        "sessions": attach(session_factory(engine), dispatcher),
        "write_sessions": attach(session_factory(engine, write=True), dispatcher),
        "seen": Recorder(session_factory(engine, write=True)),
    }

    from helpdesk.web import (
        admin,
        api,
        db,
        login,
        macros,
        mail_admin,
        reports,
        rules_admin,
        security,
        sla_admin,
        tickets,
        tokens,
        views,
    )

    db.init_app(app)
    security.init_app(app)
    errors.init_app(app)
    login.init_app(app)
    csrf = CSRFProtect(app)
    blueprints = (
        login.bp, views.bp, tickets.bp, admin.bp, sla_admin.bp, reports.bp, mail_admin.bp,
        tokens.bp, rules_admin.bp, macros.bp,
    )  # fmt: skip
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    api.init_app(app, settings.api_rate_limit)
    csrf.exempt(app.blueprints["api"])  # bearer tokens, no cookies

    zone = ZoneInfo(settings.timezone)

    @app.template_filter("local")
    def local_time(value: datetime | None) -> str:
        """A timestamp in the desk's time zone (HELPDESK_TIMEZONE), to the minute."""
        return value.astimezone(zone).strftime("%Y-%m-%d %H:%M") if value else ""

    @app.errorhandler(404)
    def not_found(error):
        if api.wants_problem():
            return api.http_problem(error)
        return render_template("404.html"), 404

    @app.errorhandler(400)
    def bad_request(error):
        return render_template("400.html", message=error.description), 400

    return app
