"""The outbox: mail we will send, written in the transaction of the change that caused it.

A row holds the fully rendered message, so the worker only delivers bytes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, deferred, mapped_column, relationship

from helpdesk.models.base import Base

OUTBOX_STATES = ("queued", "sending", "sent", "failed")


class OutboxMail(Base):
    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_state_due", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"), index=True)
    # acknowledgement, reply, notification, escalation
    purpose: Mapped[str] = mapped_column(String(32))
    mail_from: Mapped[str] = mapped_column(String(320))
    rcpt_tos: Mapped[list] = mapped_column(default=list)
    state: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    content: Mapped[bytes] = deferred(mapped_column(LargeBinary))

    ticket: Mapped[Ticket | None] = relationship()  # noqa: F821
    message: Mapped[Message | None] = relationship()  # noqa: F821
