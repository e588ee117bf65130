"""Ready-made rules, shipped disabled: an admin enables (and adapts) them.

- remind a customer whose ticket has waited on them (pending) for 3 business
  days, and close it after 5, with a mail each time; a customer's answer
  reopens the ticket, which cancels both (they count from the last status
  change, and act again only once the ticket is pending anew);
- round-robin assignment of new tickets in tech-support;
- mail from VIP domains: tagged ``vip`` and raised to high priority (edit the
  list of domains).

The business days are hours of the seeded calendar (Monday to Friday,
09:00-17:00: 8 business hours a day); on a calendar with other hours, adapt
the numbers. ``seed`` adds the ones a database has never had (``helpdesk
init``), so a ready-made rule an admin deleted stays deleted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.automation import service
from helpdesk.models import Counter, Rule

PRESETS: list[tuple[str, dict[str, Any]]] = [
    (
        "pending_reminder",
        {
            "name": "Remind the customer after 3 business days pending",
            "position": 900,
            "trigger": "time",
            "conditions": {"all": [
                {"field": "status", "op": "is", "value": "pending"},
                {"field": "hours_in_status", "op": "gte", "value": 24},
            ]},
            "actions": [{"mail_requester": {"template": "pending_reminder"}}],
        },
    ),
    (
        "pending_close",
        {
            "name": "Close after 5 business days pending",
            "position": 910,
            "trigger": "time",
            "conditions": {"all": [
                {"field": "status", "op": "is", "value": "pending"},
                {"field": "hours_in_status", "op": "gte", "value": 40},
            ]},
            "actions": [
                {"set": "status", "value": "closed"},
                {"mail_requester": {"template": "auto_closed"}},
            ],
        },
    ),
    (
        "tech_support_round_robin",
        {
            "name": "Round-robin in tech-support",
            "position": 920,
            "trigger": "ticket.created",
            "conditions": {"all": [
                {"field": "queue", "op": "is", "value": "tech-support"},
                {"field": "assignee", "op": "is", "value": "none"},
            ]},
            "actions": [{"set": "assignee", "value": "round_robin"}],
        },
    ),
    (
        "vip_domains",
        {
            "name": "VIP domains: tag and raise the priority",
            "position": 930,
            "trigger": "ticket.created",
            "conditions": {"all": [
                {"field": "requester_domain", "op": "in", "value": ["vip.example"]},
            ]},
            "actions": [{"add_tags": ["vip"]}, {"set": "priority", "value": "high"}],
        },
    ),
]  # fmt: skip
_SEEDED = "rule_presets"


def seed(session: Session, *, now: datetime) -> list[Rule]:
    """Add the ready-made rules this database has not had yet (disabled)."""
    counter = session.get(Counter, _SEEDED)
    if counter is None:
        counter = Counter(name=_SEEDED, value=0)
        session.add(counter)
    have = set(session.scalars(select(Rule.preset).where(Rule.preset.is_not(None))))
    added = []
    for index, (key, data) in enumerate(PRESETS, start=1):
        if index <= counter.value or key in have:
            continue
        try:
            added.append(service.save(session, None, {**data, "enabled": False}, now=now,
                                      preset=key))  # fmt: skip
        except service.RuleError:
            continue  # a queue it names was renamed away: skip it
    counter.value = max(counter.value, len(PRESETS))
    return added


def preset(session: Session, key: str) -> Rule | None:
    return session.scalars(select(Rule).where(Rule.preset == key)).first()
