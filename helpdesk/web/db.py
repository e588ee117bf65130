"""Per-request database sessions: opened on first use, committed by the view that
writes (``commit()``), rolled back and closed at teardown."""

from __future__ import annotations

from flask import Flask, current_app, g
from sqlalchemy.orm import Session

from helpdesk.settings import Settings


def get_session() -> Session:
    if "db" not in g:
        g.db = current_app.extensions["helpdesk"]["sessions"]()
    return g.db


def get_settings() -> Settings:
    return current_app.extensions["helpdesk"]["settings"]


def commit() -> None:
    get_session().commit()


def fresh_session() -> Session:
    """Drop this request's session, with any change a failed service call left in
    it, and open a new one: a view that must show the page again after a
    failure renders it from what is committed, never from expired objects."""
    close_session()
    return get_session()


def close_session(_exc: BaseException | None = None) -> None:
    session = g.pop("db", None)
    if session is not None:
        session.close()


def init_app(app: Flask) -> None:
    app.teardown_appcontext(close_session)
