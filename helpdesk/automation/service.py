"""Keeping rules: create, change, enable, reorder and delete them, as the admin
page and the API do.

Every save validates the rule (``schema.parse_rule``) and what it names in the
database (queues, users, mail templates), bumps its revision and stores the
normalised JSON; a bad rule raises ``RuleError`` and nothing changes. The
caller commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from helpdesk.accounts.users import by_email
from helpdesk.automation.actions import mail_templates
from helpdesk.automation.engine import forget_rules
from helpdesk.automation.schema import (
    ASSIGN_STRATEGIES,
    MailRequester,
    RuleSpec,
    SetField,
    SpecError,
    leaves,
    parse_rule,
)
from helpdesk.models import Queue, Rule


class RuleError(ValueError):
    """A rule that cannot be saved; the message is safe to show."""


def all_rules(session: Session) -> list[Rule]:
    return list(session.scalars(select(Rule).order_by(Rule.position, Rule.id)))


def to_json(rule: Rule) -> dict[str, Any]:
    """A stored rule as the API shows it."""
    return {
        "id": rule.id,
        "name": rule.name,
        "enabled": rule.enabled,
        "position": rule.position,
        "trigger": rule.trigger,
        "conditions": rule.conditions or {},
        "actions": rule.actions or [],
        "preset": rule.preset,
        "revision": rule.revision,
        "created_at": rule.created_at.isoformat(),
        "updated_at": rule.updated_at.isoformat(),
    }


def check_names(session: Session, spec: RuleSpec | Any, actions: list[Any]) -> None:
    """Queues, users and templates the rule names must exist (raises ``RuleError``)."""
    slugs = set(session.scalars(select(Queue.slug)))
    conditions = getattr(spec, "conditions", None)
    for leaf in leaves(conditions):
        if leaf.field == "queue":
            missing = [v for v in leaf.values if v not in slugs]
            if missing:
                raise RuleError(f"no queue {missing[0]!r}")
    for action in actions:
        if isinstance(action, SetField) and action.set == "queue" and action.value not in slugs:
            raise RuleError(f"no queue {action.value!r}")
        if isinstance(action, SetField) and action.set == "assignee":
            value = action.value
            if value not in (*ASSIGN_STRATEGIES, "me") and by_email(session, value) is None:
                raise RuleError(f"no user {value!r}")
        if isinstance(action, MailRequester):
            template = action.mail_requester.template
            if template is not None and template not in mail_templates():
                raise RuleError(f"no mail template {template!r}")


def validate(session: Session, data: Any) -> RuleSpec:
    """Parse and check a rule (``RuleError`` with the problems)."""
    try:
        spec = parse_rule(data)
    except SpecError as exc:
        raise RuleError(str(exc)) from None
    check_names(session, spec, spec.actions)
    return spec


def save(
    session: Session, rule: Rule | None, data: Any, *, now: datetime, preset: str | None = None
) -> Rule:
    """Create (``rule`` None) or replace a rule from its JSON."""
    spec = validate(session, data)
    clash = session.scalars(select(Rule).where(func.lower(Rule.name) == spec.name.lower())).first()
    if clash is not None and clash is not rule:
        raise RuleError(f"another rule is called {spec.name!r}")
    if rule is None:
        rule = Rule(created_at=now, revision=0, preset=preset)
        session.add(rule)
    rule.name = spec.name
    rule.enabled = spec.enabled
    rule.position = spec.position
    rule.trigger = spec.trigger
    rule.conditions = spec.conditions_json()
    rule.actions = spec.actions_json()
    rule.revision = (rule.revision or 0) + 1
    rule.updated_at = now
    session.flush()
    forget_rules(session)
    return rule


def set_enabled(session: Session, rule: Rule, enabled: bool, *, now: datetime) -> None:
    if rule.enabled != enabled:
        rule.enabled = enabled
        rule.revision += 1
        rule.updated_at = now
        forget_rules(session)


def move(session: Session, rule: Rule, direction: int, *, now: datetime) -> None:
    """Swap the rule with its neighbour (``direction`` -1: earlier, +1: later);
    positions are renumbered 10, 20, 30... so that every rule has its own."""
    rules = all_rules(session)
    index = rules.index(rule)
    other = index + (1 if direction > 0 else -1)
    if 0 <= other < len(rules):
        rules[index], rules[other] = rules[other], rules[index]
    for number, each in enumerate(rules, start=1):
        if each.position != number * 10:
            each.position = number * 10
            each.updated_at = now
    forget_rules(session)


def delete(session: Session, rule: Rule) -> None:
    session.delete(rule)
    session.flush()
    forget_rules(session)
