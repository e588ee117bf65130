"""Queues (help-desk, service-desk, tech-support) and the addresses that route to them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from helpdesk.models.base import Base


class Queue(Base):
    __tablename__ = "queues"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # What acknowledgements and replies are sent from.
    email_address: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime]
    # What a customer's reply to a *closed* ticket does: "reopen" it, or open a
    # "new_ticket" linked to it. A reply to a resolved ticket always reopens.
    closed_reply_policy: Mapped[str] = mapped_column(String(16), default="reopen")

    addresses: Mapped[list[QueueAddress]] = relationship(
        back_populates="queue", cascade="all, delete-orphan", order_by="QueueAddress.id"
    )


class QueueAddress(Base):
    """An address that delivers into a queue; ``slug+anything@domain`` also matches."""

    __tablename__ = "queue_addresses"

    id: Mapped[int] = mapped_column(primary_key=True)
    queue_id: Mapped[int] = mapped_column(ForeignKey("queues.id", ondelete="CASCADE"), index=True)
    address: Mapped[str] = mapped_column(String(320), unique=True)

    queue: Mapped[Queue] = relationship(back_populates="addresses")
