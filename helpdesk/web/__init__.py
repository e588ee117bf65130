"""The web app: ``create_app`` builds it; importing this package does nothing."""

from __future__ import annotations

from typing import Any

from flask import Flask

from helpdesk.db import make_engine, resource_dir, session_factory
from helpdesk.settings import Settings


def create_app(settings: Settings | None = None, engine: Any = None) -> Flask:
    settings = (settings or Settings.load()).with_secret_key()
    app = Flask(
        "helpdesk",
        template_folder=str(resource_dir("templates")),
        instance_path=str(settings.instance_path.resolve()),
    )
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        JSON_SORT_KEYS=False,
    )
    engine = engine or make_engine(settings)
    app.extensions["helpdesk"] = {
        "settings": settings,
        "engine": engine,
        "sessions": session_factory(engine),
        "write_sessions": session_factory(engine, write=True),
    }

    from helpdesk.web import api, db

    db.init_app(app)
    app.register_blueprint(api.bp)
    return app
