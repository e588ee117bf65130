"""Server-side web sessions: created at sign-in, ended by sign-out, by a password
or role change, or by deactivation.

The browser's cookie carries a random session id; the database keeps only its
SHA-256 (like API tokens), so a copy of the database or a logged query does
not sign anyone in. The id has 256 random bits: a plain hash is enough, no key
or salt is needed to make guessing it from the hash hopeless.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from helpdesk.models import User, WebSession

IDLE_TIMEOUT = timedelta(hours=12)


def stored_id(session_id: str) -> str:
    """What the database keeps for a session id."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def start(session: Session, user: User, *, now: datetime) -> str:
    """A new session for ``user``; returns its id, for the cookie only."""
    session_id = secrets.token_urlsafe(32)
    session.add(
        WebSession(id_hash=stored_id(session_id), user=user, created_at=now, last_seen_at=now)
    )
    return session_id


def user_of(session: Session, session_id: str, *, now: datetime) -> User | None:
    """The active user of a live session, refreshing its last use."""
    row = session.get(WebSession, stored_id(session_id))
    if row is None or not row.user.active or now - row.last_seen_at > IDLE_TIMEOUT:
        return None
    if now - row.last_seen_at > timedelta(minutes=1):
        row.last_seen_at = now
    return row.user


def end(session: Session, session_id: str) -> None:
    session.execute(delete(WebSession).where(WebSession.id_hash == stored_id(session_id)))


def end_all(session: Session, user: User, *, keep: str | None = None) -> None:
    """End every session of ``user``, except the one whose id is ``keep``."""
    condition = WebSession.user_id == user.id
    if keep:
        condition = condition & (WebSession.id_hash != stored_id(keep))
    session.execute(delete(WebSession).where(condition))
