"""Acknowledgements sent per hour, in all (scope ``*``) and per recipient domain
(scope ``@domain``), for the caps of ``helpdesk.outbound.acknowledgement``."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from helpdesk.models.base import Base


class AcknowledgementCount(Base):
    __tablename__ = "acknowledgement_counts"

    scope: Mapped[str] = mapped_column(String(320), primary_key=True)
    # The start of the hour (UTC) the count is for.
    hour: Mapped[datetime] = mapped_column(primary_key=True)
    count: Mapped[int] = mapped_column(default=0)
