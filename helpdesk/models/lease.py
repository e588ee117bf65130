"""Leases: which process runs a job that must run once across all processes (the applier).

A holder renews its row while it works and checks it in every transaction
that acts under the lease (see ``helpdesk.intake.lease``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from helpdesk.models.base import Base


class Lease(Base):
    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    # host:pid:nonce of the process that holds it.
    holder: Mapped[str] = mapped_column(String(255))
    acquired_at: Mapped[datetime]
    expires_at: Mapped[datetime]
