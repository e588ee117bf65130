"""Time rules: the worker's pass, every minute, over the tickets whose condition
holds now, in business time from each queue's calendar.

For each enabled time rule, in order (``run_pass``):

1. its conditions become one SQL clause (``sqlfilter``), exact or a superset
   checked in Python per candidate;
2. marks (``RuleMark``) of tickets the condition no longer holds for are
   removed: the condition stopped being true, so when it becomes true again
   the rule acts again;
3. the candidates are the tickets matching the clause that the rule has no
   mark for, or whose mark is older than the moment the rule counts from
   (``anchor``: a new status, a newer message: the condition became true
   anew even if no pass saw it false); the rule acts on each
   (``actions.perform`` as ``Actor.rule``) and marks it. So a rule acts once
   each time its condition becomes true, not every minute.

Work is cut into transactions of ``BATCH`` tickets (SQLite's writer lock is
shared with the gateway); a pass acts on at most ``MAX_PER_RULE`` tickets per
rule and leaves the rest to the next minute. One worker at a time runs the
pass: it holds the ``time-rules`` lease. The log (``record``) is pruned at the
end of each pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, exists, or_, select
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.automation import record
from helpdesk.automation.actions import ActionFailed, perform
from helpdesk.automation.calendars import queue_calendars
from helpdesk.automation.conditions import evaluate
from helpdesk.automation.engine import CompiledRule, enabled_rules
from helpdesk.automation.situation import from_ticket
from helpdesk.automation.sqlfilter import SqlContext, anchor_expression, compile_conditions
from helpdesk.intake import lease
from helpdesk.models import RuleMark, Ticket
from helpdesk.settings import Settings

log = logging.getLogger(__name__)

LEASE_NAME = "time-rules"
BATCH = 100
MAX_PER_RULE = 1000


@dataclass
class Selection:
    """A rule's SQL: the clause, whether it is exact, and its anchor."""

    clause: object
    exact: bool
    anchor: object


def selection(session: Session, rule: CompiledRule, now: datetime) -> Selection:
    context = SqlContext.load(session, queue_calendars(session), now)
    clause = compile_conditions(rule.conditions, context)
    return Selection(clause, context.exact, anchor_expression(rule.conditions))


def candidates(
    session: Session, rule_id: int, chosen: Selection, *, limit: int, marked: bool = True
) -> list[tuple[int, datetime]]:
    """(ticket id, anchor) of tickets matching the clause, unmarked (or marked before
    their anchor) when ``marked``; by id."""
    stmt = select(Ticket.id, chosen.anchor).where(  # type: ignore[call-overload]
        Ticket.merged_into_id.is_(None), chosen.clause
    )
    if marked:
        stmt = stmt.outerjoin(
            RuleMark, and_(RuleMark.rule_id == rule_id, RuleMark.ticket_id == Ticket.id)
        ).where(or_(RuleMark.ticket_id.is_(None), RuleMark.anchor_at < chosen.anchor))
    return [(row[0], row[1]) for row in session.execute(stmt.order_by(Ticket.id).limit(limit))]


def forget_unmatched(session: Session, rule: CompiledRule, chosen: Selection, now: datetime) -> int:
    """Remove the marks of tickets the rule's condition no longer holds for."""
    if chosen.exact:
        still = exists(
            select(Ticket.id).where(
                Ticket.id == RuleMark.ticket_id, Ticket.merged_into_id.is_(None), chosen.clause
            )
        )
        result = session.execute(
            delete(RuleMark)
            .where(RuleMark.rule_id == rule.id, ~still)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount or 0
    gone = 0
    marks = session.scalars(select(RuleMark).where(RuleMark.rule_id == rule.id).limit(5000))
    for mark in list(marks):
        ticket = session.get(Ticket, mark.ticket_id)
        if ticket is None or not evaluate(
            rule.conditions, from_ticket(session, ticket, event="time", at=now)
        ):
            session.delete(mark)
            gone += 1
    return gone


def act(
    session: Session,
    rule: CompiledRule,
    ticket: Ticket,
    anchor: datetime,
    *,
    settings: Settings,
    now: datetime,
) -> str:
    """Do the rule's actions on the ticket and mark it; returns the outcome."""
    try:
        done = perform(session, ticket, rule.actions, actor=rule.actor, settings=settings, now=now)
    except ActionFailed as exc:
        detail, outcome = "; ".join([*exc.done, f"failed: {exc.reason}"]), "failed"
    else:
        detail, outcome = "; ".join(done) or "nothing to change", "acted"
    record.add_run(session, rule_id=rule.id, ticket=ticket, at=now, event="time",
                   outcome=outcome, detail=detail)  # fmt: skip
    mark = session.get(RuleMark, (rule.id, ticket.id))
    if mark is None:
        session.add(RuleMark(rule_id=rule.id, ticket_id=ticket.id, anchor_at=anchor, acted_at=now))
    else:
        mark.anchor_at, mark.acted_at = anchor, now
    return outcome


class TimeRules:
    """The pass (see the module docstring); ``run(now)`` once a minute."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings) -> None:
        self.sessions = sessions
        self.settings = settings
        self.holder = lease.holder_id()

    def _hold(self, session: Session, now: datetime) -> bool:
        return lease.acquire(session, LEASE_NAME, self.holder, now=now)

    def run(self, now: datetime) -> int:
        """One pass at ``now``; returns how many tickets rules acted on."""
        with self.sessions() as session, session.begin():
            if not self._hold(session, now):
                return 0
            rules = list(enabled_rules(session).get("time", []))
        acted = 0
        for rule in rules:
            acted += self._run_rule(rule, now)
        with self.sessions() as session, session.begin():
            if self._hold(session, now):
                record.prune(session)
        return acted

    def _run_rule(self, rule: CompiledRule, now: datetime) -> int:
        acted = 0
        with self.sessions() as session, session.begin():
            if not self._hold(session, now):
                return 0
            forget_unmatched(session, rule, selection(session, rule, now), now)
        skipped: set[int] = set()
        while acted < MAX_PER_RULE:
            with self.sessions() as session, session.begin():
                if not self._hold(session, now):
                    break
                chosen = selection(session, rule, now)
                found = candidates(session, rule.id, chosen, limit=BATCH + len(skipped))
                found = [(i, a) for i, a in found if i not in skipped][:BATCH]
                if not found:
                    break
                tickets = {
                    t.id: t
                    for t in session.scalars(
                        select(Ticket).where(Ticket.id.in_([i for i, _ in found]))
                    )
                }
                for ticket_id, anchor in found:
                    ticket = tickets.get(ticket_id)
                    if ticket is None:
                        continue
                    situation = from_ticket(session, ticket, event="time", at=now)
                    if not chosen.exact and not evaluate(rule.conditions, situation):
                        skipped.add(ticket_id)
                        continue
                    act(session, rule, ticket, anchor, settings=self.settings, now=now)
                    acted += 1
                if len(found) < BATCH:
                    break
        if acted:
            log.info("time rule %s acted on %d ticket(s)", rule.name, acted)
        return acted
