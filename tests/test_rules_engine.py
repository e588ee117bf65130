"""Event rules on SQLite and PostgreSQL: every trigger, the order rules run in,
the bounds on chains of reactions, failing actions, and the log and journal.

Mail comes in through intake (``receive``: parse, thread, lifecycle), agents
act through the lifecycle, and the standard subscribers (with the rule engine)
run as in the product.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from helpdesk.automation import record
from helpdesk.models import Contact, Rule, RuleJournal, RuleRun, Ticket, User
from helpdesk.tickets import conversation, lifecycle
from helpdesk.tickets.actors import Actor
from tests.rules_support import (
    NOW,
    Desk,
    by_rule,
    history,
    journal,
    mail,
    make_desk,
    outbox,
    runs,
    ticket,
)

INVOICES = {
    "name": "Invoices to service desk",
    "trigger": "ticket.created",
    "conditions": {"all": [
        {"field": "subject", "op": "contains", "value": "invoice"},
        {"field": "queue", "op": "is", "value": "help-desk"},
    ]},
    "actions": [
        {"set": "queue", "value": "service-desk"},
        {"add_tags": ["billing"]},
        {"set": "priority", "value": "high"},
    ],
}  # fmt: skip


@pytest.fixture
def desk(engine, settings) -> Desk:  # type: ignore[no-untyped-def]
    desk = make_desk(engine, settings)
    desk.user("anna@example.com", "agent", ["help-desk", "service-desk"])
    desk.user("boss@example.com", "manager")
    return desk


def test_ticket_created_rule_acts_on_the_next_mail_with_its_name_in_history(desk, session):
    rule_id = desk.rule(INVOICES)
    number = desk.receive(mail("Your invoice 2026-17"))
    other = desk.receive(mail("Printer on fire"))

    moved = ticket(session, number)
    assert (moved.queue.slug, moved.priority) == ("service-desk", "high")
    assert [t.name for t in moved.tags] == ["billing"]
    assert sorted(by_rule(session, number, "Invoices to service desk")) == [
        ("priority", "normal", "high"),
        ("queue", "help-desk", "service-desk"),
        ("tags", "", "billing"),
    ]
    # The rule ran before the acknowledgement: it comes from the queue the ticket is in now.
    ack = next(row for row in outbox(session, number) if row.purpose == "acknowledgement")
    assert ack.mail_from == "service-desk@example.com"
    untouched = ticket(session, other)
    assert (untouched.queue.slug, untouched.priority) == ("help-desk", "normal")

    (run,) = runs(session, rule_id)
    assert (run.outcome, run.event, run.ticket_id) == ("acted", "ticket.created", moved.id)
    assert "queue help-desk → service-desk" in run.detail and "priority normal → high" in run.detail
    # Why the rule left the other ticket alone is in the journal.
    rows = journal(session, "ticket.created")
    reasons = {row.ticket_id: row.verdicts.get(str(rule_id)) for row in rows}
    assert reasons[moved.id] is None
    assert reasons[untouched.id] == "subject does not contain 'invoice'"


def test_message_received_rule_sees_automated_mail_for_what_it_is(desk, session):
    rule_id = desk.rule({
        "name": "Customer answered",
        "trigger": "message.received",
        "conditions": {"all": [{"field": "automated", "op": "is", "value": False},
                               {"field": "body", "op": "regex", "value": r"order\s+#?\d+"}]},
        "actions": [{"add_tags": ["answered"]}, {"note": "The customer gave an order number."}],
    })  # fmt: skip
    number = desk.receive(mail("Where is my parcel?"))
    tag = f"[HD#{number}]"
    auto = "Auto-Submitted: auto-replied\r\n"
    desk.receive(mail(f"Out of office {tag}", body="order 12", headers=auto))
    assert by_rule(session, number, "Customer answered") == []
    desk.receive(mail(f"Re: {tag}", body="It is ORDER #4711."), now=NOW + timedelta(minutes=5))
    assert by_rule(session, number, "Customer answered") == [
        ("tags", "", "answered"),
        ("note", "", ""),
    ]
    found = ticket(session, number)
    note = next(m for m in found.messages if m.kind == "note")
    assert (note.text_body, note.from_name) == (
        "The customer gave an order number.",
        "Customer answered",
    )
    (run,) = runs(session, rule_id)
    assert run.detail == "tags - → answered; note added"
    verdicts = [row.verdicts.get(str(rule_id)) for row in journal(session, "message.received")]
    assert verdicts == ["automated is yes", None]


def test_reply_sent_and_ticket_updated_rules(desk, session):
    desk.rule({
        "name": "Waiting after a question",
        "trigger": "reply.sent",
        "conditions": {"all": [{"field": "body", "op": "contains", "value": "let us know"}]},
        "actions": [{"set": "status", "value": "pending"}],
    })  # fmt: skip
    desk.rule({
        "name": "Urgent to managers",
        "trigger": "ticket.updated",
        "conditions": {"all": [{"field": "changed", "op": "has", "value": "priority"},
                               {"field": "priority", "op": "is", "value": "urgent"}]},
        "actions": [{"notify": "managers", "text": "Urgent now."}],
    })  # fmt: skip
    number = desk.receive(mail("Printer on fire"))
    with desk.write() as write, write.begin():
        found = write.scalars(select(Ticket).where(Ticket.number == number)).one()
        anna = write.scalars(select(User).where(User.email == "anna@example.com")).one()
        conversation.reply(write, found, actor=anna, text="Did it help? Please let us know.",
                           settings=desk.settings, now=NOW + timedelta(minutes=1))  # fmt: skip
        lifecycle.update(
            write, found, priority="urgent", actor=anna, now=NOW + timedelta(minutes=2)
        )
    assert by_rule(session, number, "Waiting after a question") == [("status", "open", "pending")]
    assert by_rule(session, number, "Urgent to managers") == [("notify", "", "boss@example.com")]
    notices = [r for r in outbox(session, number) if r.purpose == "notification:rule"]
    assert [r.rcpt_tos for r in notices] == [["boss@example.com"]]


def test_sla_rules(desk, session):
    desk.rule({
        "name": "Breached first response",
        "trigger": "sla.breached",
        "conditions": {"all": [{"field": "sla_clock", "op": "is", "value": "first_response"}]},
        "actions": [{"add_tags": ["late"]}, {"set": "priority", "value": "urgent"}],
    })  # fmt: skip
    desk.rule(
        {
            "name": "Warned",
            "trigger": "sla.warning",
            "actions": [{"add_tags": ["warned"]}],
        }
    )
    number = desk.receive(mail("Printer on fire"))
    with desk.write() as write, write.begin():
        found = write.scalars(select(Ticket).where(Ticket.number == number)).one()
        for level, clock in (("warning", "first_response"), ("breach", "resolution"),
                             ("breach", "first_response")):  # fmt: skip
            lifecycle.record_sla(
                write, found, clock=clock, label=clock, level=level, due=NOW, target_minutes=60,
                elapsed_minutes=61, running=True, now=NOW + timedelta(hours=5),
            )  # fmt: skip
    assert by_rule(session, number, "Warned") == [("tags", "", "warned")]
    assert by_rule(session, number, "Breached first response") == [
        ("priority", "normal", "urgent"),
        ("tags", "warned", "warned, late"),
    ]


def test_rules_run_in_order_each_seeing_the_ticket_as_the_ones_before_left_it(desk, session):
    second = desk.rule({
        "name": "Second", "position": 20, "trigger": "ticket.created",
        "conditions": {"all": [{"field": "priority", "op": "is", "value": "high"}]},
        "actions": [{"set": "priority", "value": "low"}, {"add_tags": ["second"]}],
    })  # fmt: skip
    desk.rule({
        "name": "First", "position": 10, "trigger": "ticket.created",
        "actions": [{"set": "priority", "value": "high"}],
    })  # fmt: skip
    number = desk.receive(mail("Order matters"))
    rows = [(kind, new, label) for kind, _, new, actor, label in history(session, number)
            if actor == "rule"]  # fmt: skip
    assert rows == [("priority", "high", "First"), ("priority", "low", "Second"),
                    ("tags", "second", "Second")]  # fmt: skip
    assert [r.outcome for r in runs(session, second)] == ["acted"]


def test_two_rules_undoing_each_other_stop_and_depth_is_bounded(desk, session):
    desk.rule({
        "name": "Down", "position": 1, "trigger": "ticket.updated",
        "conditions": {"all": [{"field": "priority", "op": "is", "value": "high"}]},
        "actions": [{"set": "priority", "value": "low"}],
    })  # fmt: skip
    up = desk.rule({
        "name": "Up", "position": 2, "trigger": "ticket.updated",
        "conditions": {"all": [{"field": "priority", "op": "is", "value": "low"}]},
        "actions": [{"set": "priority", "value": "high"}],
    })  # fmt: skip
    # A ladder: each rule tags the next step; the chain stops three reactions deep.
    # (Later steps come first in order, so only the reactions can climb the ladder.)
    for step in range(1, 6):
        desk.rule({
            "name": f"Step {step}", "position": 20 - step, "trigger": "ticket.updated",
            "conditions": {"all": [{"field": "tags", "op": "has", "value": f"s{step - 1}"},
                                   {"field": "tags", "op": "has_not", "value": f"s{step}"}]},
            "actions": [{"add_tags": [f"s{step}"]}],
        })  # fmt: skip
    number = desk.receive(mail("Loop"))
    with desk.write() as write, write.begin():
        found = write.scalars(select(Ticket).where(Ticket.number == number)).one()
        lifecycle.update(write, found, priority="high", actor=Actor.system("test"), now=NOW)
    # high (by hand) → low (Down, depth 1) → high (Up, depth 2) → Down may not act again.
    assert by_rule(session, number, "Down") == [("priority", "high", "low")]
    assert by_rule(session, number, "Up") == [("priority", "low", "high")]
    assert ticket(session, number).priority == "high"
    last = [row for row in journal(session, "ticket.updated") if str(up) not in row.verdicts]
    assert any("already acted in this chain" in " ".join(r.verdicts.values()) for r in last)

    ladder = desk.receive(mail("Ladder"))
    with desk.write() as write, write.begin():
        found = write.scalars(select(Ticket).where(Ticket.number == ladder)).one()
        lifecycle.set_tags(write, found, ["s0"], actor=Actor.system("test"), now=NOW)
    tags = sorted(t.name for t in ticket(session, ladder).tags)
    assert tags == ["s0", "s1", "s2", "s3"]  # depth 1, 2, 3: then the limit
    ladder_id = ticket(session, ladder).id
    reasons = [
        reason
        for row in journal(session, "ticket.updated")
        if row.ticket_id == ladder_id
        for reason in row.verdicts.values()
    ]
    assert "not run: 3 reactions deep already (the limit is 3)" in reasons


def test_a_failing_action_is_logged_and_the_mail_still_lands(desk, session):
    desk.user("tess@example.com", "agent", ["tech-support"])
    bad = desk.rule({
        "name": "Give to Tess", "position": 1, "trigger": "ticket.created",
        "actions": [{"add_tags": ["tried"]}, {"set": "assignee", "value": "tess@example.com"}],
    })  # fmt: skip
    desk.rule({
        "name": "Tag it", "position": 2, "trigger": "ticket.created",
        "actions": [{"add_tags": ["tagged"]}],
    })  # fmt: skip
    number = desk.receive(mail("Printer on fire"))
    found = ticket(session, number)
    assert found.assignee is None
    # The rule's field changes are one change: refused together.
    assert sorted(t.name for t in found.tags) == ["tagged"]
    (run,) = runs(session, bad)
    assert run.outcome == "failed"
    assert run.detail == "failed: tess@example.com cannot work in help-desk"


def test_rule_mail_is_threaded_automatic_and_skips_bouncing_requesters(desk, session):
    rule_id = desk.rule({
        "name": "Thanks", "trigger": "ticket.created",
        "actions": [{"mail_requester": {
            "text": "Thanks {{ ticket.requester.name }}, see {{ ticket.ref }}."}}],
    })  # fmt: skip
    number = desk.receive(mail("Printer on fire", sender="eve@customer.example"))
    rows = [r for r in outbox(session, number) if r.purpose == "automatic"]
    assert len(rows) == 1 and rows[0].rcpt_tos == ["eve@customer.example"]
    spec = rows[0].spec
    assert spec["in_reply_to"].startswith("<rule-test-") and spec["automatic"] is True
    assert rows[0].next_attempt_at > rows[0].created_at  # due after the change's replies
    message = rows[0].message
    assert message.text_body == f"Thanks Bob Customer, see HD#{number}."
    assert by_rule(session, number, "Thanks")[-1] == ("mail", "", "eve@customer.example")

    with desk.write() as write, write.begin():
        contact = write.scalars(
            select(Contact).where(Contact.email == "eve@customer.example")
        ).one()
        contact.bouncing_since = NOW
    again = desk.receive(mail("Another one", sender="eve@customer.example"))
    assert [r for r in outbox(session, again) if r.purpose == "automatic"] == []
    assert runs(session, rule_id)[-1].detail == "not mailed eve@customer.example (bounces)"


def test_round_robin_and_fewest_open(desk, session):
    for name in ("t1", "t2", "t3"):
        desk.user(f"{name}@example.com", "agent", ["tech-support"])
    desk.rule({
        "name": "Round robin", "trigger": "ticket.created",
        "conditions": {"all": [{"field": "queue", "op": "is", "value": "tech-support"}]},
        "actions": [{"set": "assignee", "value": "round_robin"}],
    })  # fmt: skip
    numbers = [desk.receive(mail(f"Crash {i}"), queue="tech-support") for i in range(4)]
    assignees = [ticket(session, n).assignee.email for n in numbers]
    assert assignees == ["t1@example.com", "t2@example.com", "t3@example.com", "t1@example.com"]

    with desk.write() as write, write.begin():
        rule = write.scalars(select(Rule)).one()
        rule.actions = [{"set": "assignee", "value": "fewest_open"}]
        rule.revision += 1
    # t1 has two open tickets, t2 and t3 one each: t2, then t3, then (all at two) round.
    more = [desk.receive(mail(f"More {i}"), queue="tech-support") for i in range(3)]
    assert [ticket(session, n).assignee.email for n in more] == [
        "t2@example.com", "t3@example.com", "t1@example.com",
    ]  # fmt: skip


def test_log_entries_of_a_rolled_back_savepoint_are_dropped(desk, session):
    rule_id = desk.rule(
        {"name": "Tag", "trigger": "ticket.created", "actions": [{"add_tags": ["x"]}]}
    )
    number = desk.receive(mail("Keep"))
    with desk.write() as write, write.begin():
        found = write.scalars(select(Ticket).where(Ticket.number == number)).one()
        with pytest.raises(RuntimeError), write.begin_nested():
            record.add_run(write, rule_id=rule_id, ticket=found, at=NOW, event="ticket.created",
                           outcome="acted", detail="never happened")  # fmt: skip
            raise RuntimeError("roll this back")
        record.add_run(write, rule_id=rule_id, ticket=found, at=NOW, event="ticket.created",
                       outcome="acted", detail="kept")  # fmt: skip
    assert [r.detail for r in runs(session, rule_id)][-1] == "kept"
    assert "never happened" not in [r.detail for r in runs(session, rule_id)]


def test_prune_keeps_the_newest(desk, session, monkeypatch):
    monkeypatch.setattr(record, "KEEP_RUNS", 2)
    monkeypatch.setattr(record, "KEEP_JOURNAL", 3)
    rule_id = desk.rule(
        {"name": "Tag", "trigger": "ticket.created", "actions": [{"add_tags": ["x"]}]}
    )
    numbers = [desk.receive(mail(f"Mail {i}")) for i in range(5)]
    with desk.write() as write, write.begin():
        # 5 runs, 5 ticket.created and 5 ticket.updated (the tag) events
        assert record.prune(write) == 3 + 2 + 2
    kept = runs(session, rule_id)
    assert [r.ticket_id for r in kept] == [ticket(session, n).id for n in numbers[-2:]]
    assert len(session.scalars(select(RuleJournal)).all()) == 3 + 3
    assert session.scalars(select(RuleRun).where(RuleRun.rule_id == rule_id)).all() == kept
