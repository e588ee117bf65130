"""The audit history of a ticket: who changed what, when."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from helpdesk.models.base import Base


class TicketEvent(Base):
    __tablename__ = "ticket_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    # None for the system (mail intake, SLA jobs).
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # status, priority, assignee, queue, tags, merge, reply, note, ...
    kind: Mapped[str] = mapped_column(String(32))
    old_value: Mapped[str] = mapped_column(String(400), default="")
    new_value: Mapped[str] = mapped_column(String(400), default="")
    created_at: Mapped[datetime]

    actor: Mapped[User | None] = relationship(lazy="joined")  # noqa: F821
