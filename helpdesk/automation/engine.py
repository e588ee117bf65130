"""The rule engine: a subscriber of the ticket lifecycle that runs the enabled
event rules, in order, inside the transaction of the change that triggered them.

For each event that is a rule trigger (``situation.TRIGGER_EVENTS``) the
engine takes the enabled rules of that trigger by position, and for each:

1. skips it when the event is already ``max_depth`` reactions deep (default
   3: a rule's change may set off rules whose changes set off rules, three
   levels, no more) or when this rule already acted earlier in the chain
   (``Cause.chain`` names every actor): no rule acts twice in one chain, so
   two rules undoing each other cannot loop;
2. evaluates its conditions on the ticket as it is now (after the rules before
   it) and the event (``helpdesk.automation.conditions``);
3. if they hold, performs its actions through the lifecycle as
   ``Actor.rule(id, name)`` (history: "by rule <name>"); the changes' events
   are dispatched at once, so rules reacting to them run before the next rule
   in order; an action that fails is logged and the next rule runs.

What each rule did goes to its log, and the event with the reasons the other
rules did not act goes to the journal (``helpdesk.automation.record``),
written at commit. Enabled rules are read once per transaction (one small
query; intake applies a hundred mails per transaction) and parsed once per
process per content.

Wiring (``helpdesk.subscribers``): the engine is subscribed first for
``TicketCreated``, so that a rule that moves or assigns a new ticket does so
before the acknowledgement and the notifications are made (they then come
from the right queue and reach the right people), and last for the other
events, after the notifications and SLA clocks of the change itself.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.automation import record
from helpdesk.automation.actions import ActionFailed, perform
from helpdesk.automation.conditions import evaluate
from helpdesk.automation.schema import Node, SpecError, parse_rule
from helpdesk.automation.situation import TRIGGER_EVENTS, from_event, trigger_of
from helpdesk.models import Rule
from helpdesk.settings import Settings
from helpdesk.tickets.actors import RULE, Actor
from helpdesk.tickets.events import Cause, Event

log = logging.getLogger(__name__)

MAX_DEPTH = 3
_KEY = "helpdesk.rules"


@dataclass(frozen=True)
class CompiledRule:
    """An enabled rule, parsed."""

    id: int
    name: str
    trigger: str
    conditions: Node | None
    actions: list[Any]

    @property
    def actor(self) -> Actor:
        return Actor.rule(self.id, self.name)


_parsed: dict[tuple[object, ...], CompiledRule] = {}


def compile_row(row: Rule) -> CompiledRule:
    """A stored rule, parsed (cached per process by its content: ids and revisions
    repeat across databases, and SQLite may give a deleted rule's id again)."""
    key = (row.id, row.name, row.trigger, json.dumps(row.conditions, sort_keys=True),
           json.dumps(row.actions, sort_keys=True))  # fmt: skip
    found = _parsed.get(key)
    if found is None:
        spec = parse_rule({"name": row.name, "trigger": row.trigger,
                           "conditions": row.conditions, "actions": row.actions})  # fmt: skip
        found = CompiledRule(row.id, row.name, row.trigger, spec.conditions, spec.actions)
        if len(_parsed) > 10_000:
            _parsed.clear()
        _parsed[key] = found
    return found


def enabled_rules(session: Session) -> dict[str, list[CompiledRule]]:
    """The enabled rules by trigger, in order (read once per transaction)."""
    transaction = session.get_transaction()
    cached = session.info.get(_KEY)
    if cached is not None and cached[0] is transaction:
        return cached[1]
    by_trigger: dict[str, list[CompiledRule]] = {}
    with session.no_autoflush:
        rows = session.scalars(
            select(Rule).where(Rule.enabled).order_by(Rule.position, Rule.id)
        ).all()
    for row in rows:
        try:
            compiled = compile_row(row)
        except SpecError as exc:  # only a hand edit of the database gets here
            log.error("rule %s (%s) is not valid and does not run: %s", row.id, row.name, exc)
            continue
        by_trigger.setdefault(compiled.trigger, []).append(compiled)
    session.info[_KEY] = (transaction, by_trigger)
    return by_trigger


def forget_rules(session: Session) -> None:
    """Read the rules again at their next use (after saving one in this transaction)."""
    session.info.pop(_KEY, None)


def acted_in(cause: Cause, rule_id: int) -> bool:
    return any(actor.kind == RULE and actor.ref == rule_id for actor in cause.chain)


def skip_reason(cause: Cause, rule_id: int, max_depth: int) -> str | None:
    """Why a rule may not act on an event of this cause, if it may not."""
    if cause.depth >= max_depth:
        return f"not run: {cause.depth} reactions deep already (the limit is {max_depth})"
    if acted_in(cause, rule_id):
        return "not run: it already acted in this chain of changes"
    return None


class RuleEngine:
    """Subscriber: runs the enabled event rules (see the module docstring)."""

    event_types = tuple(TRIGGER_EVENTS.values())

    def __init__(self, settings: Settings, *, max_depth: int = MAX_DEPTH) -> None:
        self.settings = settings
        self.max_depth = max_depth

    def __call__(self, session: Session, event: Event) -> None:
        trigger = trigger_of(event)
        if trigger is None:
            return
        rules = enabled_rules(session).get(trigger, [])
        situation = from_event(session, event, trigger)
        facts = situation.facts()
        facts["depth"] = event.cause.depth
        facts["chain_rules"] = [a.ref for a in event.cause.chain if a.kind == RULE]
        verdicts: dict[str, str] = {}
        for rule in rules:
            reason = skip_reason(event.cause, rule.id, self.max_depth)
            if reason is None:
                verdict = evaluate(rule.conditions, situation)
                reason = None if verdict else verdict.reason
            if reason is not None:
                verdicts[str(rule.id)] = reason
                continue
            self._act(session, rule, event, trigger)
            situation = from_event(session, event, trigger)  # as the rule left the ticket
        record.add_journal(
            session, ticket=event.ticket, at=event.at, event=trigger, facts=facts,
            verdicts=verdicts, message=getattr(event, "message", None),
        )  # fmt: skip

    def _act(self, session: Session, rule: CompiledRule, event: Event, trigger: str) -> None:
        ticket = event.ticket
        try:
            done = perform(
                session, ticket, rule.actions, actor=rule.actor, settings=self.settings,
                now=event.at,
            )  # fmt: skip
        except ActionFailed as exc:
            detail = "; ".join([*exc.done, f"failed: {exc.reason}"])
            log.warning("rule %s on ticket %s: %s", rule.name, ticket.number, exc.reason)
            outcome = "failed"
        else:
            detail, outcome = "; ".join(done) or "nothing to change", "acted"
        record.add_run(
            session, rule_id=rule.id, ticket=ticket, at=event.at, event=trigger,
            outcome=outcome, detail=detail,
        )  # fmt: skip
