"""SLA data: business calendars with holidays, policies, and each ticket's clocks.

``TicketSla`` holds what reports and lists need, recomputed from the ticket's
history by ``helpdesk.sla.clocks.refresh`` whenever the ticket changes and by
the worker's escalation job when a threshold comes due.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING

from sqlalchemy import Date, Float, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from helpdesk.models.base import Base
from helpdesk.models.queue import Queue

if TYPE_CHECKING:
    from helpdesk.models.ticket import Ticket


class SlaCalendar(Base):
    __tablename__ = "sla_calendars"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # Seven lists (Monday first) of [start, end] minutes from midnight; end may pass 1440.
    weekly: Mapped[list[list[list[int]]]] = mapped_column(default=list)
    created_at: Mapped[datetime]

    holidays: Mapped[list[SlaHoliday]] = relationship(
        back_populates="calendar", cascade="all, delete-orphan", order_by="SlaHoliday.day"
    )


class SlaHoliday(Base):
    __tablename__ = "sla_holidays"
    __table_args__ = (UniqueConstraint("calendar_id", "day", name="uq_sla_holidays_calendar_day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    calendar_id: Mapped[int] = mapped_column(ForeignKey("sla_calendars.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date)
    name: Mapped[str] = mapped_column(String(200), default="")

    calendar: Mapped[SlaCalendar] = relationship(back_populates="holidays")


class SlaPolicy(Base):
    """Targets for tickets of a queue and/or priority; the lowest position matching wins."""

    __tablename__ = "sla_policies"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    position: Mapped[int] = mapped_column(default=100)
    queue_id: Mapped[int | None] = mapped_column(ForeignKey("queues.id", ondelete="CASCADE"))
    priority: Mapped[str | None] = mapped_column(String(16))
    calendar_id: Mapped[int] = mapped_column(ForeignKey("sla_calendars.id"))
    first_response_minutes: Mapped[int | None]
    first_response_business: Mapped[bool] = mapped_column(default=True)
    next_response_minutes: Mapped[int | None]
    next_response_business: Mapped[bool] = mapped_column(default=True)
    resolution_minutes: Mapped[int | None]
    resolution_business: Mapped[bool] = mapped_column(default=True)
    warn_percent: Mapped[int] = mapped_column(default=80)
    created_at: Mapped[datetime]

    queue: Mapped[Queue | None] = relationship(lazy="joined")
    calendar: Mapped[SlaCalendar] = relationship(lazy="joined")


class TicketSla(Base):
    __tablename__ = "ticket_slas"
    __table_args__ = (
        Index("ix_ticket_slas_next_check", "next_check_at"),
        Index("ix_ticket_slas_state", "state"),
    )

    ticket_id: Mapped[int] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True
    )
    policy_id: Mapped[int | None] = mapped_column(
        ForeignKey("sla_policies.id", ondelete="SET NULL")
    )
    # running, paused, due_soon, breached, met, none
    state: Mapped[str] = mapped_column(String(16), default="none")
    breached: Mapped[bool] = mapped_column(default=False)
    first_response_at: Mapped[datetime | None]
    first_response_due: Mapped[datetime | None]
    first_response_minutes: Mapped[float | None] = mapped_column(Float)
    first_response_breached_at: Mapped[datetime | None]
    next_response_due: Mapped[datetime | None]
    next_response_breached_at: Mapped[datetime | None]
    next_response_answered: Mapped[int] = mapped_column(default=0)
    resolution_due: Mapped[datetime | None]
    resolution_minutes: Mapped[float | None] = mapped_column(Float)
    resolution_breached_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    paused_minutes: Mapped[float] = mapped_column(Float, default=0.0)
    # The earliest due time of a running clock (lists sort by it); None when none runs.
    due_at: Mapped[datetime | None] = mapped_column(index=True)
    # When the escalation job should look again (next warning or breach).
    next_check_at: Mapped[datetime | None]
    # Escalations already sent, e.g. ["first_response:warning", "resolution:breach"].
    escalations: Mapped[list[str]] = mapped_column(default=list)
    computed_at: Mapped[datetime]

    policy: Mapped[SlaPolicy | None] = relationship(lazy="joined")
    # Lets a new ticket get its clocks before it is flushed (no extra flush).
    ticket: Mapped[Ticket] = relationship()
