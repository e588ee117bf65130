"""Messages of a ticket (inbound mail, outbound mail, internal notes) and attachments."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, deferred, mapped_column, relationship

from helpdesk.models.base import Base

if TYPE_CHECKING:
    from helpdesk.models.ticket import Ticket

KINDS = ("inbound", "outbound", "note")


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    raw_mail_id: Mapped[int | None] = mapped_column(ForeignKey("raw_mails.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    # Threading headers, as received or as we sent them (angle brackets kept).
    message_id: Mapped[str] = mapped_column(String(998), index=True)
    in_reply_to: Mapped[str] = mapped_column(Text, default="")
    references_header: Mapped[str] = mapped_column(Text, default="")
    from_address: Mapped[str] = mapped_column(String(320), default="")
    from_name: Mapped[str] = mapped_column(String(200), default="")
    to_addresses: Mapped[list[str]] = mapped_column(default=list)
    cc_addresses: Mapped[list[str]] = mapped_column(default=list)
    reply_to: Mapped[str] = mapped_column(String(998), default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    sent_at: Mapped[datetime | None]
    text_body: Mapped[str] = mapped_column(Text, default="")
    html_body: Mapped[str] = mapped_column(Text, default="")
    # html_body sanitised once when stored (helpdesk.mail.display.prepare_html); None
    # for rows stored before it existed (the page then sanitises them itself).
    html_safe: Mapped[str | None] = mapped_column(Text)
    flags: Mapped[list[str]] = mapped_column(default=list)
    # Other queues the same message was addressed to (recorded, not routed).
    also_addressed: Mapped[list[str]] = mapped_column(default=list)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime]

    ticket: Mapped[Ticket] = relationship(back_populates="messages")
    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="message", cascade="all, delete-orphan", order_by="Attachment.id"
    )


class Attachment(Base):
    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    # Set for inline parts referenced from HTML as cid:...
    content_id: Mapped[str] = mapped_column(String(998), default="")
    inline: Mapped[bool] = mapped_column(default=False)
    data: Mapped[bytes] = deferred(mapped_column(LargeBinary))

    message: Mapped[Message] = relationship(back_populates="attachments")
