"""Server-side records of signed-in browser sessions, login failures and presence.

The session cookie only carries a random session id; deleting the row (sign
out, deactivation) ends that session at once, wherever the cookie went.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from helpdesk.models.base import Base


class WebSession(Base):
    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]

    user: Mapped[User] = relationship(lazy="joined")  # noqa: F821


class LoginFailure(Base):
    """One failed sign-in, for throttling by account and by client address."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_email_at", "email", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    remote_addr: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime]


class TicketViewer(Base):
    """Who has a ticket open right now (for the collision hint)."""

    __tablename__ = "ticket_viewers"

    ticket_id: Mapped[int] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    last_seen_at: Mapped[datetime]

    user: Mapped[User] = relationship(lazy="joined")  # noqa: F821
