"""Trying a rule before saving it, and reading what a rule did.

- ``event_preview``: which of the last 200 events of the rule's trigger it
  would have acted on, evaluated on the facts the journal kept from the
  moment of each event (the ticket as it was then, the message's text), with
  the engine's bounds (depth, once per chain);
- ``time_preview``: the tickets a time rule would act on if the pass ran now
  (the same selection as the worker's, marks of a saved rule included);
- ``check_ticket``: whether a rule's conditions hold for one ticket now, and
  why not;
- ``log``: a rule's execution log (what it changed, or why it failed) merged
  with the recent events it saw and did not act on, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from helpdesk.automation import record
from helpdesk.automation.calendars import queue_calendars
from helpdesk.automation.conditions import evaluate
from helpdesk.automation.engine import MAX_DEPTH, CompiledRule
from helpdesk.automation.schema import RuleSpec
from helpdesk.automation.situation import from_facts, from_ticket
from helpdesk.automation.timed import candidates, selection
from helpdesk.models import Message, RuleJournal, Ticket

PREVIEW_EVENTS = 200
PREVIEW_TICKETS = 200


@dataclass
class Line:
    """One row of a preview or a log: when, which ticket, and what (or why not)."""

    at: datetime
    number: int | None
    subject: str
    acted: bool
    text: str


def _compiled(spec: RuleSpec, rule_id: int | None) -> CompiledRule:
    return CompiledRule(rule_id or 0, spec.name, spec.trigger, spec.conditions, spec.actions)


def event_preview(
    session: Session, spec: RuleSpec, *, rule_id: int | None = None, limit: int = PREVIEW_EVENTS
) -> list[Line]:
    """The last ``limit`` events of the rule's trigger, each with whether it would act."""
    rows = record.recent(session, spec.trigger, limit=limit)
    message_ids = [r.facts.get("message_id") for r in rows if r.facts.get("message_id")]
    bodies = dict(
        session.execute(
            select(Message.id, Message.text_body).where(Message.id.in_(message_ids))
        ).all()
    ) if message_ids else {}  # fmt: skip
    numbers = _numbers(session, [r.ticket_id for r in rows])
    calendars = queue_calendars(session)
    lines = []
    for row in rows:
        facts = row.facts or {}
        calendar = calendars.of(int(facts.get("queue_id") or 0))
        body = bodies.get(facts.get("message_id"), "")
        situation = from_facts(facts, event=row.event, at=row.at, calendar=calendar, body=body)
        if int(facts.get("depth") or 0) >= MAX_DEPTH:
            acted, text = False, "not run: too many reactions deep"
        elif rule_id is not None and rule_id in (facts.get("chain_rules") or []):
            acted, text = False, "not run: it had already acted in that chain"
        else:
            verdict = evaluate(spec.conditions, situation)
            acted, text = verdict.matched, "would act" if verdict else verdict.reason
        number, _ = numbers.get(row.ticket_id, (None, ""))
        lines.append(Line(row.at, number, situation.subject, acted, text))
    return lines


def time_preview(
    session: Session,
    spec: RuleSpec,
    *,
    now: datetime,
    rule_id: int | None = None,
    limit: int = PREVIEW_TICKETS,
) -> tuple[list[Line], int]:
    """The tickets the time rule would act on now (up to ``limit``) and how many
    the SQL selection found in all (before a per-ticket check, if one is needed)."""
    rule = _compiled(spec, rule_id)
    chosen = selection(session, rule, now)
    found = candidates(session, rule.id, chosen, limit=limit * 5, marked=rule_id is not None)
    total = len(found)
    tickets = {
        t.id: t for t in session.scalars(select(Ticket).where(Ticket.id.in_([i for i, _ in found])))
    }
    lines = []
    for ticket_id, _ in found:
        ticket = tickets.get(ticket_id)
        if ticket is None:
            continue
        if not chosen.exact and not evaluate(
            rule.conditions, from_ticket(session, ticket, event="time", at=now)
        ):
            total -= 1
            continue
        if len(lines) < limit:
            lines.append(Line(now, ticket.number, ticket.subject, True, "would act"))
    return lines, total


def check_ticket(session: Session, spec: RuleSpec, ticket: Ticket, *, now: datetime) -> str:
    """Whether the rule's conditions hold for the ticket now, and why not."""
    situation = from_ticket(session, ticket, event=spec.trigger, at=now)
    verdict = evaluate(spec.conditions, situation)
    return "the conditions hold" if verdict else verdict.reason


def log(session: Session, rule_id: int, trigger: str, *, limit: int = 100) -> list[Line]:
    """What the rule did, and the recent events it did not act on with the reason."""
    runs = record.runs_of(session, rule_id, limit=limit)
    key = str(rule_id)
    passed = [
        r for r in record.recent(session, trigger, limit=limit * 5) if key in (r.verdicts or {})
    ]
    numbers = _numbers(session, [r.ticket_id for r in runs] + [r.ticket_id for r in passed])
    lines = [
        Line(r.at, *numbers.get(r.ticket_id, (None, "")), r.outcome == "acted",
             r.detail if r.outcome == "acted" else f"{r.outcome}: {r.detail}")
        for r in runs
    ] + [
        Line(r.at, *numbers.get(r.ticket_id, (None, "")), False, r.verdicts[key])
        for r in passed[:limit]
    ]  # fmt: skip
    return sorted(lines, key=lambda line: line.at, reverse=True)[:limit]


def _numbers(session: Session, ids: list[int | None]) -> dict[int, tuple[int, str]]:
    wanted = [i for i in set(ids) if i is not None]
    if not wanted:
        return {}
    rows = session.execute(
        select(Ticket.id, Ticket.number, Ticket.subject).where(Ticket.id.in_(wanted))
    ).all()
    return {row[0]: (row[1], row[2]) for row in rows}


def count_events(session: Session, trigger: str) -> int:
    return (
        session.scalar(
            select(func.count()).select_from(RuleJournal).where(RuleJournal.event == trigger)
        )
        or 0
    )
