"""Server-side records of signed-in browser sessions, login failures and presence.

The session cookie only carries a random session id, and the table only its
SHA-256; deleting the row (sign out, a password or role change, deactivation)
ends that session at once, wherever the cookie went.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from helpdesk.models.base import Base

if TYPE_CHECKING:
    from helpdesk.models.user import User


class WebSession(Base):
    __tablename__ = "web_sessions"

    # SHA-256 (hex) of the id in the cookie; the id itself is never stored.
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]

    user: Mapped[User] = relationship(lazy="joined")


class LoginFailure(Base):
    """One failed sign-in, for throttling by account and by client address.

    ``email`` is the account key (the typed address normalised once, see
    ``accounts.signin.account_key``); ``remote_addr`` the client's address,
    or its /64 network for IPv6."""

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

    user: Mapped[User] = relationship(lazy="joined")
