"""Per-request database sessions: opened on first use, committed by the view that
writes (``commit()``), rolled back and closed at teardown.

A request that may write (POST, PUT, PATCH, DELETE) gets a write session:
on SQLite its transaction begins with ``BEGIN IMMEDIATE``, so it waits for
another process's write (the busy timeout) instead of failing when it
reads first and writes later. GET and HEAD get read sessions and never
write; "last seen" goes through ``recorder()``, best effort, off the request."""

from __future__ import annotations

from flask import Flask, current_app, g, has_request_context, request
from sqlalchemy.orm import Session

from helpdesk.settings import Settings
from helpdesk.tickets.presence import Recorder

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_session() -> Session:
    if "db" not in g:
        helpdesk = current_app.extensions["helpdesk"]
        writes = has_request_context() and request.method not in READ_METHODS
        g.db = helpdesk["write_sessions" if writes else "sessions"]()
    return g.db


def recorder() -> Recorder:
    """Where views note who was seen (presence, session use), written in the background."""
    return current_app.extensions["helpdesk"]["seen"]


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
