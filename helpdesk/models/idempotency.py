"""Answers to API requests that carried an Idempotency-Key, kept for 24 hours."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from helpdesk.models.base import Base


class IdempotentRequest(Base):
    """One (token, key): the request's fingerprint and the answer it got.

    Written in the same transaction as the change the request made, so the
    answer is stored exactly when the change is (see ``helpdesk.api.idempotency``).
    """

    __tablename__ = "api_idempotency"
    __table_args__ = (Index("uq_api_idempotency_token_key", "token_id", "key", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(default=0)
    body: Mapped[str] = mapped_column(Text, default="")
    location: Mapped[str] = mapped_column(String(2000), default="")
    created_at: Mapped[datetime] = mapped_column(index=True)
