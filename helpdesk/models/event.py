"""The audit history of a ticket: who changed what, when.

Rows are written only by the ticket lifecycle (``helpdesk.tickets.lifecycle``).
``actor_kind`` says who acted (``agent``, ``customer``, ``rule``, ``system``,
``api_token``); ``actor_label`` names them for the page (a rule's name, a
token's name, a customer's address, the system job); ``actor_id`` is the user
behind an agent or an API token.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from helpdesk.models.base import Base

if TYPE_CHECKING:
    from helpdesk.models.ticket import Ticket
    from helpdesk.models.user import User


class TicketEvent(Base):
    __tablename__ = "ticket_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    # The user behind an agent or an API token; None for customers, rules and the system.
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor_kind: Mapped[str] = mapped_column(String(16), default="system", server_default="system")
    actor_label: Mapped[str] = mapped_column(String(200), default="", server_default="")
    # created, status, priority, assignee, queue, tags, merge, reply, note, sla_warning, sla_breach
    kind: Mapped[str] = mapped_column(String(32))
    old_value: Mapped[str] = mapped_column(String(400), default="")
    new_value: Mapped[str] = mapped_column(String(400), default="")
    created_at: Mapped[datetime]

    actor: Mapped[User | None] = relationship(lazy="joined")
    # Lets the lifecycle write a row for a ticket not flushed yet (no extra flush).
    ticket: Mapped[Ticket] = relationship()
