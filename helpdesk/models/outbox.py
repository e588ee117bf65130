"""The outbox: mail we will send, written in the transaction of the change that caused it.

A row holds what the worker needs to build the message when it sends it
(``spec``, see ``helpdesk.outbound.ticket_mail``), or, for rows queued by an
older version, the finished bytes (``content``). ``header_message_id`` is the
Message-ID the mail carries, so that a bounce or an auto-reply to it can be
matched to the row (``feedback`` records what came back).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ForeignKey, Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, deferred, mapped_column, relationship

from helpdesk.models.base import Base

if TYPE_CHECKING:
    from helpdesk.models.message import Message
    from helpdesk.models.ticket import Ticket


class OutboxMail(Base):
    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_state_due", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"), index=True)
    # acknowledgement, reply, notification, escalation
    purpose: Mapped[str] = mapped_column(String(32))
    mail_from: Mapped[str] = mapped_column(String(320))
    rcpt_tos: Mapped[list[str]] = mapped_column(default=list)
    state: Mapped[str] = mapped_column(String(16), default="queued")  # sending, sent, failed
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    # The Message-ID header of the mail (angle brackets kept).
    header_message_id: Mapped[str] = mapped_column(
        String(998), default="", server_default="", index=True
    )
    # How to build the mail at send time (JSON); None for rows holding finished bytes.
    spec: Mapped[dict[str, Any] | None]
    # What came back after delivery: a bounce or an auto-reply, one line each.
    feedback: Mapped[str] = mapped_column(Text, default="", server_default="")
    content: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))

    ticket: Mapped[Ticket | None] = relationship()
    message: Mapped[Message | None] = relationship()
