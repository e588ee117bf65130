"""Users (agents, managers, admins), their queue memberships and API tokens."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, ForeignKey, String, Table
from sqlalchemy.orm import Mapped, mapped_column, relationship

from helpdesk.models.base import Base
from helpdesk.models.queue import Queue

ROLES = ("agent", "manager", "admin")
TOKEN_SCOPES = ("read", "write")

user_queues = Table(
    "user_queues",
    Base.metadata,
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("queue_id", ForeignKey("queues.id", ondelete="CASCADE"), primary_key=True),
)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(16), default="agent")
    password_hash: Mapped[str] = mapped_column(String(255), default="")
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime]
    # Which notifications the user wants by email.
    notify_new_ticket: Mapped[bool] = mapped_column(default=True)
    notify_assigned: Mapped[bool] = mapped_column(default=True)
    notify_customer_reply: Mapped[bool] = mapped_column(default=True)

    queues: Mapped[list[Queue]] = relationship(secondary=user_queues, order_by="Queue.slug")
    tokens: Mapped[list[ApiToken]] = relationship(
        back_populates="user", cascade="all, delete-orphan"
    )

    @property
    def sees_all_queues(self) -> bool:
        return self.role in ("manager", "admin")


class ApiToken(Base):
    """A bearer token; only its SHA-256 is stored.

    ``scope`` is ``read`` or ``write`` (changes); either way the token acts with
    its user's rights, never more. A revoked token is kept (its name still
    names it in ticket history) but no longer authenticates.
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    scope: Mapped[str] = mapped_column(String(8), default="read")
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="tokens", lazy="joined")
