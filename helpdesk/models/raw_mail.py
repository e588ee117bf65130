"""Raw mail: the exact bytes the gateway accepted, the envelope, and where intake is with it.

The gateway stores a row (state ``spooled``) and commits it before answering
250; nothing is parsed then. The applier turns spooled rows into tickets in
order of ``id`` and sets the state in the same transaction as the effect:
``processed`` (a ticket or follow-up), ``dropped`` (a loop, a delay report,
an auto-reply to nothing), ``duplicate`` (the same message was applied
before: ``ticket_id`` points at its ticket), ``unparsed`` (over a parsing cap
or the parse failed: a ticket from the header block, the original attached),
or ``failed`` (could not be applied; ``error`` says why; ``helpdesk mail
reprocess`` retries it).

The same bytes delivered twice (``sha256``) are one row; the same message
relayed with other trace headers is caught at apply time by ``dedup_key``
(Message-ID plus a body fingerprint), which only applied rows carry.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, deferred, mapped_column

from helpdesk.models.base import Base

RAW_STATES = ("spooled", "processed", "dropped", "duplicate", "unparsed", "failed")


class RawMail(Base):
    __tablename__ = "raw_mails"
    __table_args__ = (
        # The applier's queue: spooled rows in order of receipt.
        Index("ix_raw_mails_state_id", "state", "id"),
        Index("ix_raw_mails_sha256", "sha256", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime]
    peer: Mapped[str] = mapped_column(String(255), default="")
    helo: Mapped[str] = mapped_column(String(255), default="")
    mail_from: Mapped[str] = mapped_column(String(998), default="")
    rcpt_tos: Mapped[list[str]] = mapped_column(default=list)
    size: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    # Message-ID header (or the one derived from content) plus a body hash:
    # the same message delivered twice (even by another relay) collides here.
    dedup_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    message_id: Mapped[str] = mapped_column(String(998), default="")
    state: Mapped[str] = mapped_column(String(16))
    error: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(default=0)
    processed_at: Mapped[datetime | None]
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    content: Mapped[bytes] = deferred(mapped_column(LargeBinary))
