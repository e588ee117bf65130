"""Helpers for the automation tests: a desk with agents, mail in through intake,
rules saved through the service, and readers of history, log and outbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.accounts import users
from helpdesk.automation import service
from helpdesk.intake.receive import Envelope, receive
from helpdesk.models import (
    OutboxMail,
    Rule,
    RuleJournal,
    RuleRun,
    Ticket,
    TicketEvent,
    User,
)
from helpdesk.settings import Settings
from helpdesk.subscribers import writing_sessions

# A Wednesday, 10:00 UTC: business hours on the seeded calendar (Mon-Fri 09-17 UTC).
NOW = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
_counter = iter(range(1, 1_000_000))


def mail(
    subject: str = "Printer on fire",
    *,
    sender: str = "bob@customer.example",
    to: str = "help-desk@example.com",
    body: str = "Please help.",
    headers: str = "",
    in_reply_to: str = "",
) -> bytes:
    number = next(_counter)
    thread = f"In-Reply-To: {in_reply_to}\r\nReferences: {in_reply_to}\r\n" if in_reply_to else ""
    return (
        f"From: Bob Customer <{sender}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <rule-test-{number}@customer.example>\r\n{thread}{headers}\r\n{body}\r\n"
    ).encode()


@dataclass
class Desk:
    engine: Any
    settings: Settings

    def write(self) -> Session:
        return writing_sessions(self.engine, self.settings)()

    def receive(self, raw: bytes, *, now: datetime = NOW, queue: str = "help-desk") -> int:
        sender = raw.split(b"<", 1)[1].split(b">", 1)[0].decode()
        with self.write() as session, session.begin():
            result = receive(
                session, raw, Envelope(sender, (f"{queue}@example.com",)),
                settings=self.settings, now=now,
            )  # fmt: skip
            assert result.ticket_number is not None, result
            return result.ticket_number

    def rule(self, data: dict[str, Any], *, enabled: bool = True) -> int:
        with self.write() as session, session.begin():
            return service.save(session, None, {"enabled": enabled, **data}, now=NOW).id

    def user(self, email: str, role: str = "agent", queues: list[str] | None = None) -> int:
        with self.write() as session, session.begin():
            return users.add_or_update(session, email, role=role, queue_slugs=queues, now=NOW).id


def make_desk(engine, settings: Settings, *, presets_off: bool = True) -> Desk:  # type: ignore[no-untyped-def]
    """The seeded desk; the ready-made rules (disabled) removed unless asked to keep."""
    desk = Desk(engine, settings)
    if presets_off:
        with desk.write() as session, session.begin():
            for rule in session.scalars(select(Rule)):
                session.delete(rule)
    return desk


def ticket(session: Session, number: int) -> Ticket:
    session.expire_all()
    return session.scalars(select(Ticket).where(Ticket.number == number)).one()


def history(session: Session, number: int) -> list[tuple[str, str, str, str, str]]:
    """(kind, old, new, actor kind, actor label) of each history row, oldest first."""
    found = ticket(session, number)
    rows = session.scalars(
        select(TicketEvent).where(TicketEvent.ticket_id == found.id).order_by(TicketEvent.id)
    )
    return [(r.kind, r.old_value, r.new_value, r.actor_kind, r.actor_label) for r in rows]


def by_rule(session: Session, number: int, name: str) -> list[tuple[str, str, str]]:
    return [
        (kind, old, new)
        for kind, old, new, actor, label in history(session, number)
        if actor == "rule" and label == name
    ]


def runs(session: Session, rule_id: int) -> list[RuleRun]:
    session.expire_all()
    return list(
        session.scalars(select(RuleRun).where(RuleRun.rule_id == rule_id).order_by(RuleRun.id))
    )


def journal(session: Session, event: str) -> list[RuleJournal]:
    session.expire_all()
    return list(
        session.scalars(
            select(RuleJournal).where(RuleJournal.event == event).order_by(RuleJournal.id)
        )
    )


def outbox(session: Session, number: int) -> list[OutboxMail]:
    found = ticket(session, number)
    return list(
        session.scalars(
            select(OutboxMail).where(OutboxMail.ticket_id == found.id).order_by(OutboxMail.id)
        )
    )


def user_id(session: Session, email: str) -> int:
    return session.scalars(select(User.id).where(User.email == email)).one()
