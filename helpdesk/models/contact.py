"""Contacts: the people (and robots) who write to us, keyed by email address."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from helpdesk.models.base import Base


class Contact(Base):
    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stored lower-cased; see helpdesk.mail.addresses.normalise_address.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime]
    # Set by a permanent bounce; outgoing mail skips the address while set.
    bouncing_since: Mapped[datetime | None]
    # The last automatic acknowledgement, for the one-per-window rule.
    last_acknowledged_at: Mapped[datetime | None]
