"""Rule conditions and their validation, without a database: every field and
operator against a ``Situation``, nesting, reasons, the regex time limit, and
the rules the schema refuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from helpdesk.automation.calendars import hours_before
from helpdesk.automation.conditions import evaluate
from helpdesk.automation.schema import SpecError, parse_rule
from helpdesk.automation.situation import Situation
from helpdesk.sla.calendar import Calendar, business_minutes

WED_10 = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
OFFICE = Calendar.office_hours()


def situation(**values) -> Situation:  # type: ignore[no-untyped-def]
    base = {
        "event": "ticket.created", "at": WED_10, "queue_id": 1, "queue": "help-desk",
        "status": "new", "priority": "normal", "assignee": None,
        "tags": frozenset({"billing", "vip"}), "requester": "Bob@Customer.Example",
        "subject": "Your INVOICE 17", "channel": "mail", "calendar": OFFICE,
        "anchors": {"created_at": WED_10 - timedelta(days=2), "status_changed_at": WED_10,
                    "last_customer_message_at": None, "last_agent_reply_at": None},
        "_body": "Order #4711 is late.",
    }  # fmt: skip
    base.update(values)
    return Situation(**base)


def check(conditions: dict, trigger: str = "ticket.created", **values):  # type: ignore[no-untyped-def]
    spec = parse_rule(
        {"name": "t", "trigger": trigger, "conditions": conditions, "actions": [{"note": "x"}]}
    )
    return evaluate(spec.conditions, situation(**values))


def leaf(field: str, op: str, value: object) -> dict:
    return {"all": [{"field": field, "op": op, "value": value}]}


CASES = [
    ("queue", "is", "help-desk", True),
    ("queue", "is_not", "help-desk", False),
    ("queue", "in", ["service-desk", "help-desk"], True),
    ("queue", "not_in", ["service-desk"], True),
    ("status", "is", "new", True),
    ("priority", "in", ["high", "urgent"], False),
    ("assignee", "is", "none", True),
    ("assignee", "is_not", "none", False),
    ("tags", "has", "vip", True),
    ("tags", "has", ["x", "billing"], True),
    ("tags", "has_not", "vip", False),
    ("requester", "is", "bob@customer.example", True),
    ("requester", "contains", "customer", True),
    ("requester_domain", "in", ["customer.example", "other.example"], True),
    ("requester_domain", "is_not", "customer.example", False),
    ("subject", "contains", "invoice", True),
    ("subject", "not_contains", "invoice", False),
    ("subject", "regex", r"invoice\s+\d+", True),
    ("subject", "not_regex", r"^re:", True),
    ("body", "contains", "#4711", True),
    ("body", "regex", r"order\s+#?\d{5}", False),
    ("channel", "is", "mail", True),
    ("channel", "in", ["web", "api"], False),
    ("automated", "is", False, True),
    ("flags", "has", "bounce", False),
    ("business_hours", "is", True, True),
    ("hours_since_created", "gte", 16, True),  # Mon 10:00 to Wed 10:00: 16 business hours
    ("hours_since_created", "gte", 16.5, False),
    ("hours_since_created", "lte", 16, True),
    ("hours_in_status", "lte", 0, True),
    ("hours_since_customer_message", "gte", 0, False),  # never
]


@pytest.mark.parametrize(("field", "op", "value", "expected"), CASES)
def test_each_field_and_operator(field: str, op: str, value: object, expected: bool) -> None:
    trigger = "time" if field.startswith("hours") else "ticket.created"
    conditions = leaf(field, op, value)
    if trigger == "time" and field != "hours_since_created":
        conditions["all"].append({"field": "hours_since_created", "op": "gte", "value": 0})
    assert bool(check(conditions, trigger)) is expected


def test_event_fields() -> None:
    assert check(leaf("changed", "has", "status"), "ticket.updated", changed=frozenset({"status"}))
    assert not check(leaf("changed", "has", "queue"), "ticket.updated", changed=frozenset())
    assert check(leaf("sla_clock", "is", "resolution"), "sla.breached", sla_clock="resolution")
    automated = {"automated": True, "flags": frozenset({"auto_reply", "out_of_office"})}
    assert check(leaf("flags", "has", "out_of_office"), **automated)
    verdict = check(leaf("automated", "is", False), **automated)
    assert verdict.reason == "automated is yes"


def test_nesting_and_reasons() -> None:
    conditions = {
        "all": [
            {"field": "queue", "op": "is", "value": "help-desk"},
            {"any": [
                {"field": "priority", "op": "is", "value": "urgent"},
                {"all": [{"field": "tags", "op": "has", "value": "vip"},
                         {"field": "subject", "op": "contains", "value": "refund"}]},
            ]},
        ]
    }  # fmt: skip
    verdict = check(conditions)
    assert not verdict
    assert verdict.reason == (
        "none of: priority is normal, not urgent; subject does not contain 'refund'"
    )
    assert check(conditions, subject="Refund please")
    assert check(conditions, priority="urgent")
    assert not check(conditions, queue="service-desk", priority="urgent")
    assert check({}).matched


def test_business_hours_now_follows_the_calendar() -> None:
    saturday = datetime(2026, 3, 7, 10, 0, tzinfo=UTC)
    assert check(leaf("business_hours", "is", False), at=saturday)
    holiday = Calendar(OFFICE.timezone, OFFICE.weekly, frozenset({WED_10.date()}))
    assert check(leaf("business_hours", "is", False), calendar=holiday)


def test_a_runaway_regex_is_stopped_and_counts_as_no_match() -> None:
    verdict = check(leaf("body", "regex", r"(x+x+)+y"), _body="x" * 5000)
    assert not verdict
    assert verdict.reason == "body pattern '(x+x+)+y' took too long (counted as no match)"
    # not_regex: a pattern that timed out does not count as "does not match" either.
    assert not check(leaf("body", "not_regex", r"(x+x+)+y"), _body="x" * 5000)


def test_hours_before_is_the_inverse_of_business_minutes() -> None:
    holiday = Calendar(OFFICE.timezone, OFFICE.weekly, frozenset({datetime(2026, 3, 2).date()}))
    now = datetime(2026, 3, 10, 11, 30, tzinfo=UTC)  # a Tuesday
    for hours in (0.5, 1.5, 8, 9.5, 24, 40):
        cutoff = hours_before(holiday, now, hours)
        assert cutoff is not None
        assert business_minutes(holiday, cutoff, now) == pytest.approx(hours * 60)
        later = cutoff + timedelta(minutes=1)
        if business_minutes(holiday, later, now) == business_minutes(holiday, cutoff, now):
            pytest.fail(f"{cutoff} is not the latest instant for {hours} hours")
    assert hours_before(Calendar(), now, 1) is None  # no working time at all


BAD = [
    ({"conditions": leaf("colour", "is", "red")}, "conditions.all.0.field: Input should be"),
    ({"conditions": leaf("queue", "contains", "x")}, "queue takes the operators"),
    ({"conditions": leaf("status", "is", "sleeping")}, "status is one of"),
    ({"conditions": leaf("subject", "regex", "(")}, "not a valid regular expression"),
    ({"conditions": leaf("hours_in_status", "gte", -1)}, "needs a number"),
    ({"trigger": "time", "conditions": leaf("status", "is", "pending")}, "a time rule needs"),
    ({"conditions": leaf("changed", "has", "status")}, "only ticket.updated rules"),
    ({"actions": []}, "at least 1 item"),
    ({"actions": [{"explode": True}]}, "an action is one of"),
    ({"actions": [{"set": "status", "value": "gone"}]}, "status is one of"),
    ({"actions": [{"add_tags": ["bad tag!"]}]}, "not a valid tag"),
    ({"actions": [{"mail_requester": {}}]}, "a template or a text"),
    ({"trigger": "whenever"}, "trigger"),
    ({"name": "   "}, "a rule needs a name"),
]


@pytest.mark.parametrize(("change", "message"), BAD)
def test_the_schema_refuses_bad_rules_with_a_clear_message(change: dict, message: str) -> None:
    rule = {"name": "Bad", "trigger": "ticket.created", "actions": [{"note": "x"}], **change}
    with pytest.raises(SpecError) as raised:
        parse_rule(rule)
    assert message in str(raised.value)


def test_the_stored_json_round_trips() -> None:
    data = {
        "name": "Invoices to service desk", "enabled": True, "position": 5,
        "trigger": "ticket.created",
        "conditions": {"all": [{"field": "subject", "op": "contains", "value": "invoice"},
                               {"any": [{"field": "queue", "op": "is", "value": "help-desk"}]}]},
        "actions": [{"set": "queue", "value": "service-desk"}, {"add_tags": ["billing"]},
                    {"mail_requester": {"template": "pending_reminder"}},
                    {"notify": "managers", "text": ""}],
    }  # fmt: skip
    spec = parse_rule(data)
    assert spec.to_json() == data
    assert parse_rule(spec.to_json()) == spec
