"""Tickets, their CCs, and the counter that hands out public ticket numbers."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from helpdesk.models.base import Base
from helpdesk.models.contact import Contact
from helpdesk.models.queue import Queue

if TYPE_CHECKING:
    from helpdesk.models.message import Message
    from helpdesk.models.sla import TicketSla
    from helpdesk.models.tag import Tag
    from helpdesk.models.user import User

STATUSES = ("new", "open", "pending", "resolved", "closed")
# Tickets someone still has to work on: lists show these by default, SLA jobs look at them.
ACTIVE_STATUSES = ("new", "open", "pending")
# Active but waiting for the customer: SLA clocks pause.
WAITING_STATUSES = ("pending",)
# Done: a customer's answer reopens them (queue policy permitting).
DONE_STATUSES = ("resolved", "closed")
PRIORITIES = ("low", "normal", "high", "urgent")


class Ticket(Base):
    __tablename__ = "tickets"
    __table_args__ = (
        Index("ix_tickets_queue_status_updated", "queue_id", "status", "updated_at"),
        # Lists, counts and the sidebar read only this (bench/web.py: the queue
        # list on SQLite went from 437 to 90 ms at 100,000 tickets). On SQLite
        # `id` must follow `updated_at` to keep the early stop of ORDER BY ... LIMIT.
        Index(
            "ix_tickets_live",
            "queue_id",
            "status",
            "updated_at",
            "id",
            "assignee_id",
            "priority",
            sqlite_where=text("merged_into_id IS NULL"),
            postgresql_where=text("merged_into_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[int] = mapped_column(unique=True)
    queue_id: Mapped[int] = mapped_column(ForeignKey("queues.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="new")
    priority: Mapped[str] = mapped_column(String(16), default="normal")
    requester_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"), index=True)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    subject: Mapped[str] = mapped_column(String(998), default="")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    # Set on a ticket opened by a reply to a closed ticket (queue policy "new_ticket").
    follow_up_of_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    # How it was opened: mail, web, phone, api, portal.
    channel: Mapped[str] = mapped_column(String(16), default="mail", server_default="mail")
    # The moments time rules count from (set by the lifecycle, read set-based by
    # helpdesk.automation.timed): the last status change, the customer's last
    # message that was not automated, an agent's last reply.
    status_changed_at: Mapped[datetime | None]
    last_customer_message_at: Mapped[datetime | None]
    last_agent_reply_at: Mapped[datetime | None]

    queue: Mapped[Queue] = relationship(lazy="joined")
    follow_up_of: Mapped[Ticket | None] = relationship(
        remote_side="Ticket.id", foreign_keys=[follow_up_of_id]
    )
    requester: Mapped[Contact] = relationship(lazy="joined")
    assignee: Mapped[User | None] = relationship(lazy="joined")
    cc_links: Mapped[list[TicketCC]] = relationship(
        back_populates="ticket", cascade="all, delete-orphan", order_by="TicketCC.id"
    )
    messages: Mapped[list[Message]] = relationship(back_populates="ticket", order_by="Message.id")

    sla: Mapped[TicketSla | None] = relationship(lazy="joined", uselist=False, viewonly=True)
    tags: Mapped[list[Tag]] = relationship(secondary="ticket_tags", order_by="Tag.name")

    @property
    def ccs(self) -> list[Contact]:
        return [link.contact for link in self.cc_links]


class TicketCC(Base):
    __tablename__ = "ticket_ccs"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"))

    ticket: Mapped[Ticket] = relationship(back_populates="cc_links")
    contact: Mapped[Contact] = relationship(lazy="joined")

    __table_args__ = (
        Index("uq_ticket_ccs_ticket_contact", "ticket_id", "contact_id", unique=True),
    )


class Counter(Base):
    """Named gapless counters; ``ticket_number`` numbers tickets.

    Incremented with UPDATE ... RETURNING inside the caller's transaction, so
    two gateways never hand out the same number and a rollback leaves no gap.
    """

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int]
