"""Users and API tokens: creating and updating accounts; issuing, checking, listing and
revoking tokens."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.accounts import passwords, sessions
from helpdesk.mail.addresses import normalise_address
from helpdesk.models import ROLES, TOKEN_SCOPES, ApiToken, Queue, User


class UserError(ValueError):
    """Bad input for a user operation; the message is safe to show."""


def by_email(session: Session, email: str) -> User | None:
    """The user with this address, active or not (for managing accounts)."""
    return session.scalars(select(User).where(User.email == normalise_address(email))).one_or_none()


def active_by_email(session: Session, email: str) -> User | None:
    """The active user with this address: who may sign in, or counts as an agent."""
    return session.scalars(
        select(User).where(User.email == normalise_address(email), User.active)
    ).one_or_none()


def add_or_update(
    session: Session,
    email: str,
    *,
    role: str,
    queue_slugs: list[str] | None = None,
    password: str | None = None,
    name: str | None = None,
    now: datetime,
    keep_session: str | None = None,
) -> User:
    """Create the user, or update role, queues (when given) and password (when given).

    A new password or role ends the user's sessions, all but ``keep_session`` (the
    session id of whoever made the change, when they changed their own account).
    """
    email = normalise_address(email)
    if "@" not in email or email.startswith("@") or email.endswith("@"):
        raise UserError(f"not an email address: {email!r}")
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    user = by_email(session, email)
    before = None if user is None else (user.role, user.password_hash)
    if user is None:
        user = User(email=email, role=role, name=name or "", created_at=now, active=True)
        session.add(user)
    user.role = role
    if name is not None:
        user.name = name
    if queue_slugs is not None:
        found = list(session.scalars(select(Queue).where(Queue.slug.in_(queue_slugs))))
        missing = sorted(set(queue_slugs) - {q.slug for q in found})
        if missing:
            raise UserError(f"no such queue: {', '.join(missing)}")
        user.queues = found
    if password is not None:
        if len(password) < 8:
            raise UserError("password must be at least 8 characters")
        user.password_hash = passwords.hash_password(password)
    session.flush()
    if before is not None and (user.role, user.password_hash) != before:
        sessions.end_all(session, user, keep=keep_session)
    return user


def check_password(user: User, password: str) -> bool:
    return passwords.verify(user.password_hash, password)


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(
    session: Session, user: User, *, now: datetime, scope: str = "read", name: str = ""
) -> tuple[ApiToken, str]:
    """A new bearer token for the user, and its secret: only the secret's hash is
    stored, so show it now. Scope ``write`` lets it change what its user may change."""
    if scope not in TOKEN_SCOPES:
        raise UserError(f"scope must be one of {', '.join(TOKEN_SCOPES)}")
    name = " ".join(name.split())
    if len(name) > 100 or any(ord(c) < 32 for c in name):
        raise UserError("a token's name is at most 100 printable characters")
    secret = "hd_" + secrets.token_urlsafe(32)
    row = ApiToken(user=user, token_hash=_hash_token(secret), created_at=now, scope=scope)
    session.add(row)
    session.flush()
    row.name = name or f"token {row.id}"
    return row, secret


def create_token(
    session: Session, user: User, *, now: datetime, scope: str = "read", name: str = ""
) -> str:
    """A new bearer token's secret (see ``issue_token``)."""
    return issue_token(session, user, now=now, scope=scope, name=name)[1]


def revoke_token(session: Session, token: ApiToken, *, now: datetime) -> None:
    """The token stops working at once; it stays listed (and named in history)."""
    if token.revoked_at is None:
        token.revoked_at = now


def tokens_of(session: Session, user: User | None = None) -> list[ApiToken]:
    """A user's tokens (or everyone's), newest first, revoked ones included."""
    stmt = select(ApiToken).order_by(ApiToken.id.desc())
    if user is not None:
        stmt = stmt.where(ApiToken.user_id == user.id)
    return list(session.scalars(stmt))


def token_row(session: Session, token: str) -> ApiToken | None:
    """The token's row if it is valid (known, not revoked, its user active), else None."""
    if not token or len(token) > 200:
        return None
    row = session.scalars(
        select(ApiToken).where(ApiToken.token_hash == _hash_token(token))
    ).one_or_none()
    if row is None or row.revoked_at is not None or not row.user.active:
        return None
    return row
