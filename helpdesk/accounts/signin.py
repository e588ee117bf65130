"""Signing in to the web app: password checks with throttling, and server-side
sessions that end at once on sign-out or deactivation.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from helpdesk.accounts.users import by_email, check_password
from helpdesk.models import ApiToken, LoginFailure, User, WebSession

FAILURE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_ACCOUNT = 5
MAX_FAILURES_PER_ADDRESS = 20
IDLE_TIMEOUT = timedelta(hours=12)


class Throttled(Exception):
    """Too many failed sign-ins lately; try again later."""


def throttled(session: Session, email: str, remote_addr: str, *, now: datetime) -> bool:
    since = now - FAILURE_WINDOW
    per_account = session.scalar(
        select(func.count()).where(LoginFailure.email == email, LoginFailure.at >= since)
    )
    per_address = session.scalar(
        select(func.count()).where(
            LoginFailure.remote_addr == remote_addr, LoginFailure.at >= since
        )
    )
    return (per_account or 0) >= MAX_FAILURES_PER_ACCOUNT or (
        per_address or 0
    ) >= MAX_FAILURES_PER_ADDRESS


def sign_in(
    session: Session, email: str, password: str, *, remote_addr: str, now: datetime
) -> WebSession | None:
    """A new session for valid credentials; None (and a recorded failure) otherwise."""
    email = email.strip().lower()
    if throttled(session, email, remote_addr, now=now):
        raise Throttled()
    user = by_email(session, email)
    if user is None or not user.active or not check_password(user, password):
        session.add(LoginFailure(email=email[:320], remote_addr=remote_addr[:64], at=now))
        return None
    session.execute(delete(LoginFailure).where(LoginFailure.email == email))
    web_session = WebSession(
        id=secrets.token_urlsafe(32), user_id=user.id, created_at=now, last_seen_at=now
    )
    session.add(web_session)
    return web_session


def session_user(session: Session, session_id: str, *, now: datetime) -> User | None:
    """The active user of a live session, refreshing its last use."""
    row = session.get(WebSession, session_id)
    if row is None or not row.user.active or now - row.last_seen_at > IDLE_TIMEOUT:
        return None
    if now - row.last_seen_at > timedelta(minutes=1):
        row.last_seen_at = now
    return row.user


def sign_out(session: Session, session_id: str) -> None:
    session.execute(delete(WebSession).where(WebSession.id == session_id))


def deactivate(session: Session, user: User) -> None:
    """Deactivate a user: every session and API token stops working now."""
    user.active = False
    session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    session.execute(delete(ApiToken).where(ApiToken.user_id == user.id))
