"""Automation: rules (trigger, conditions, actions as validated JSON), what they did
(``RuleRun``), the recent events they saw (``RuleJournal``), the tickets a time
rule has acted on (``RuleMark``), and agents' macros.

The JSON is validated by ``helpdesk.automation.schema`` before it is stored;
the engine (``helpdesk.automation.engine``) and the worker's time-rule pass
(``helpdesk.automation.timed``) read it back through the same schema.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from helpdesk.models.base import Base
from helpdesk.models.queue import Queue


class Rule(Base):
    __tablename__ = "rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # Rules run by position, then id; the lowest first.
    position: Mapped[int] = mapped_column(default=100)
    enabled: Mapped[bool] = mapped_column(default=False)
    # ticket.created, message.received, reply.sent, ticket.updated, sla.warning, sla.breached, time
    trigger: Mapped[str] = mapped_column(String(32))
    # {"all": [...]} / {"any": [...]} of {"field", "op", "value"}; {} matches every ticket
    conditions: Mapped[dict[str, Any]] = mapped_column(default=dict)
    actions: Mapped[list[dict[str, Any]]] = mapped_column(default=list)
    # Set for the ready-made rules (``helpdesk.automation.library``), by their key.
    preset: Mapped[str | None] = mapped_column(String(64))
    # Bumped on every save: the engine's cache of parsed rules is keyed by it.
    revision: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class RuleRun(Base):
    """One entry of a rule's execution log: it acted on a ticket (``detail`` says
    what changed), or it matched but an action failed, with the reason."""

    __tablename__ = "rule_runs"
    __table_args__ = (Index("ix_rule_runs_rule_id_id", "rule_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("rules.id", ondelete="CASCADE"))
    ticket_id: Mapped[int | None] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime]
    # the trigger that ran it (or "time")
    event: Mapped[str] = mapped_column(String(32))
    # acted, failed
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(String(1000), default="")

    ticket: Mapped[Ticket | None] = relationship()  # noqa: F821


class RuleJournal(Base):
    """A recent event as the rules saw it: the ticket's facts at that moment and,
    per rule of its trigger that did not act, why not (``verdicts``: rule id →
    reason). Preview evaluates a rule being edited against these."""

    __tablename__ = "rule_journal"
    __table_args__ = (Index("ix_rule_journal_event_id", "event", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime]
    event: Mapped[str] = mapped_column(String(32))
    ticket_id: Mapped[int | None] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), index=True
    )
    facts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    verdicts: Mapped[dict[str, Any]] = mapped_column(default=dict)

    ticket: Mapped[Ticket | None] = relationship()  # noqa: F821


class RuleMark(Base):
    """A time rule acted on a ticket while its condition held since ``anchor_at``
    (the moment its time conditions count from). The mark goes when the
    condition stops holding, so the rule acts again when it next becomes true."""

    __tablename__ = "rule_marks"

    rule_id: Mapped[int] = mapped_column(
        ForeignKey("rules.id", ondelete="CASCADE"), primary_key=True
    )
    ticket_id: Mapped[int] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    anchor_at: Mapped[datetime | None]
    acted_at: Mapped[datetime]


class Macro(Base):
    """A named set of actions (and an optional reply) an agent applies by hand."""

    __tablename__ = "macros"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # None: offered in every queue.
    queue_id: Mapped[int | None] = mapped_column(ForeignKey("queues.id", ondelete="CASCADE"))
    actions: Mapped[list[dict[str, Any]]] = mapped_column(default=list)
    reply: Mapped[str] = mapped_column(Text, default="")
    position: Mapped[int] = mapped_column(default=100)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    queue: Mapped[Queue | None] = relationship(lazy="joined")
