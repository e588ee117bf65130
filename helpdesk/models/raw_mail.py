"""Raw mail: the exact bytes the gateway accepted, the envelope, and processing state.

Every message answered with 250 has a row here, committed in the same
transaction as its ticket and message. A message the parser cannot handle is
still stored, with state ``failed`` and the error, and can be reprocessed.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, deferred, mapped_column

from helpdesk.models.base import Base

RAW_STATES = ("processed", "failed", "dropped")


class RawMail(Base):
    __tablename__ = "raw_mails"
    __table_args__ = (Index("ix_raw_mails_state", "state"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime]
    peer: Mapped[str] = mapped_column(String(255), default="")
    helo: Mapped[str] = mapped_column(String(255), default="")
    mail_from: Mapped[str] = mapped_column(String(998), default="")
    rcpt_tos: Mapped[list] = mapped_column(default=list)
    size: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    # Message-ID header (or the one derived from content) plus a body hash:
    # the same message delivered twice (even by another relay) collides here.
    dedup_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    message_id: Mapped[str] = mapped_column(String(998), default="")
    state: Mapped[str] = mapped_column(String(16))
    error: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(default=1)
    processed_at: Mapped[datetime | None]
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    content: Mapped[bytes] = deferred(mapped_column(LargeBinary))
