"""Evaluating a rule's conditions against a ``Situation``, with the reason when
they do not hold.

``evaluate`` returns a ``Verdict``: whether the conditions hold and, when not,
a short reason a person can read ("queue is service-desk, not help-desk";
"none of: ..."). Each leaf is one ``check`` in ``CHECKS``, a small function
of the leaf and the situation returning None when it holds or the reason
when it does not; ``all`` and ``any`` combine them. Text tests ignore case;
a regular expression that runs past its time limit is a non-match whose
reason says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from helpdesk.automation.patterns import PatternTimeout, search
from helpdesk.automation.schema import All, AnyOf, Leaf, Node, children
from helpdesk.automation.situation import Situation


@dataclass(frozen=True)
class Verdict:
    matched: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.matched


MATCHED = Verdict(True)
Check = Callable[[Leaf, Situation], str | None]


def evaluate(node: Node | None, situation: Situation) -> Verdict:
    """Do the conditions hold? (No conditions: they do.)"""
    if node is None:
        return MATCHED
    reason = _reason(node, situation)
    return MATCHED if reason is None else Verdict(False, reason[:400])


def _reason(node: Node, situation: Situation) -> str | None:
    if isinstance(node, Leaf):
        return CHECKS[node.field](node, situation)
    if isinstance(node, All):
        for child in children(node):
            reason = _reason(child, situation)
            if reason is not None:
                return reason
        return None
    assert isinstance(node, AnyOf)
    reasons = []
    for child in children(node):
        reason = _reason(child, situation)
        if reason is None:
            return None
        reasons.append(reason)
    return "none of: " + "; ".join(reasons) if reasons else None


def _shown(value: object) -> str:
    if value is None or value == "":
        return "none"
    return str(value)


def _choice(actual: str | None, leaf: Leaf, what: str) -> str | None:
    """is / is_not / in / not_in on one value (None is "none")."""
    value = (actual or "none").lower()
    wanted = leaf.values
    inside = value in wanted
    if leaf.op in ("is", "in"):
        return None if inside else f"{what} is {_shown(actual)}, not {' or '.join(wanted)}"
    return None if not inside else f"{what} is {_shown(actual)}"


def _set(actual: frozenset[str], leaf: Leaf, what: str) -> str | None:
    """has (any of the values) / has_not (none of them)."""
    have = {item.lower() for item in actual}
    common = [value for value in leaf.values if value in have]
    if leaf.op == "has":
        return None if common else f"{what} has none of {', '.join(leaf.values)}"
    return None if not common else f"{what} has {', '.join(common)}"


def _text(actual: str, leaf: Leaf, what: str) -> str | None:
    pattern = leaf.values[0] if leaf.op in ("contains", "not_contains") else str(leaf.value)
    if leaf.op in ("contains", "not_contains"):
        found = pattern in actual.lower()
    else:
        try:
            found = search(pattern, actual)
        except PatternTimeout:
            return f"{what} pattern {pattern!r} took too long (counted as no match)"
    if leaf.op.startswith("not_"):
        shown = "contains" if leaf.op == "not_contains" else "matches"
        return None if not found else f"{what} {shown} {pattern!r}"
    shown = "does not contain" if leaf.op == "contains" else "does not match"
    return None if found else f"{what} {shown} {pattern!r}"


def _flag(actual: bool, leaf: Leaf, what: str) -> str | None:
    return None if actual == leaf.value else f"{what} is {'yes' if actual else 'no'}"


def _hours(leaf: Leaf, situation: Situation) -> str | None:
    hours = situation.hours_since(leaf.field)
    what = leaf.field.replace("_", " ")
    if hours is None:
        return f"{what}: never"
    limit = float(leaf.value)  # type: ignore[arg-type]
    if leaf.op == "gte":
        return None if hours >= limit else f"{what} is {hours:.1f}, under {limit:g}"
    return None if hours <= limit else f"{what} is {hours:.1f}, over {limit:g}"


CHECKS: dict[str, Check] = {
    "queue": lambda leaf, s: _choice(s.queue, leaf, "queue"),
    "status": lambda leaf, s: _choice(s.status, leaf, "status"),
    "priority": lambda leaf, s: _choice(s.priority, leaf, "priority"),
    "assignee": lambda leaf, s: _choice(s.assignee, leaf, "assignee"),
    "tags": lambda leaf, s: _set(s.tags, leaf, "tags"),
    "requester": lambda leaf, s: (
        _text(s.requester, leaf, "requester")
        if leaf.op == "contains"
        else _choice(s.requester, leaf, "requester")
    ),
    "requester_domain": lambda leaf, s: _choice(s.requester_domain, leaf, "requester domain"),
    "subject": lambda leaf, s: _text(s.subject, leaf, "subject"),
    "body": lambda leaf, s: _text(s.body, leaf, "body"),
    "channel": lambda leaf, s: _choice(s.channel, leaf, "channel"),
    "automated": lambda leaf, s: _flag(s.automated, leaf, "automated"),
    "flags": lambda leaf, s: _set(s.flags, leaf, "flags"),
    "business_hours": lambda leaf, s: _flag(s.business_hours, leaf, "business hours"),
    "changed": lambda leaf, s: _set(s.changed, leaf, "changed"),
    "sla_clock": lambda leaf, s: _choice(s.sla_clock, leaf, "SLA clock"),
    "hours_since_created": _hours,
    "hours_since_customer_message": _hours,
    "hours_since_agent_reply": _hours,
    "hours_in_status": _hours,
}
