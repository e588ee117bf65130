"""The ready-made auto-close end to end, on SQLite and PostgreSQL, under a
controllable clock: mail in through the real SMTP gateway, an agent answers
and sets the ticket pending, three business days pass (a weekend between),
the reminder reaches the relay (an aiosmtpd sink), two more pass and the
ticket is closed with a mail; on a second ticket the customer answers in
between, which cancels the close.

The gateway's applier, the outbox worker and the time rules all read the same
clock, which the test moves.
"""

from __future__ import annotations

import email
import email.policy
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from helpdesk.automation import library, service, timed
from helpdesk.intake.applier import start_applier
from helpdesk.intake.wakeup import Wakeup
from helpdesk.models import Ticket, User
from helpdesk.subscribers import writing_sessions
from helpdesk.tickets import conversation
from mailgate.outbox_sender import OutboxWorker
from mailgate.server import start_gateway
from tests.conftest import RunningGateway, free_port
from tests.rules_support import by_rule, ticket

MONDAY_0930 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def customer_mail(
    subject: str, sender: str, body: str, message_id: str, reply_to: str = ""
) -> bytes:
    thread = f"In-Reply-To: {reply_to}\r\nReferences: {reply_to}\r\n" if reply_to else ""
    return (
        f"From: Customer <{sender}>\r\nTo: help-desk@example.com\r\nSubject: {subject}\r\n"
        f"Message-ID: {message_id}\r\n{thread}\r\n{body}\r\n"
    ).encode()


@pytest.fixture
def world(engine, relay_settings, relay, make_user):  # type: ignore[no-untyped-def]
    settings = relay_settings
    clock = Clock(MONDAY_0930)
    make_user("anna@example.com", "agent", ["help-desk"])
    sessions = writing_sessions(engine, settings)
    with sessions() as session, session.begin():
        for key in ("pending_reminder", "pending_close"):
            rule = library.preset(session, key)
            assert rule is not None and not rule.enabled  # shipped disabled
            service.set_enabled(session, rule, True, now=clock())
    wakeup = Wakeup(engine)
    applier, thread = start_applier(settings, engine, wakeup=wakeup, clock=clock)
    port = free_port()
    server = start_gateway(settings, "127.0.0.1", port, engine, on_commit=wakeup.notify)
    gateway = RunningGateway("127.0.0.1", port, server, applier, thread, engine)
    yield settings, clock, sessions, gateway, relay
    gateway.stop()


def deliver(settings, sessions, clock: Clock, relay, count: int) -> list:  # type: ignore[no-untyped-def]
    """Run the outbox worker at the clock's time until nothing is due; the mails that
    reached customers (agents' notifications left out), in the order they went."""
    before = len(relay.messages)
    worker = OutboxWorker(sessions, settings, clock=clock)
    for _ in range(20):
        if not worker.run_once():
            break
    new = [raw for _, rcpts, raw in relay.messages[before:]
           if not any(r.endswith("@example.com") for r in rcpts)]  # fmt: skip
    assert len(new) == count, [raw[:300] for raw in new]
    return [email.message_from_bytes(raw, policy=email.policy.default) for raw in new]


def pass_at(settings, sessions, clock: Clock, when: datetime) -> int:  # type: ignore[no-untyped-def]
    clock.now = when
    return timed.TimeRules(sessions, settings).run(when)


def test_auto_close_end_to_end(world, session):  # type: ignore[no-untyped-def]
    settings, clock, sessions, gateway, relay = world
    first_id = "<first@customer.example>"
    gateway.send(customer_mail("Printer on fire", "carol@customer.example", "Help!", first_id),
                 mail_from="carol@customer.example")  # fmt: skip
    other_id = "<other@customer.example>"
    gateway.send(customer_mail("Scanner on fire", "dave@customer.example", "Help!", other_id),
                 mail_from="dave@customer.example")  # fmt: skip
    numbers = dict(session.execute(select(Ticket.subject, Ticket.number)).all())
    carol, dave = numbers["Printer on fire"], numbers["Scanner on fire"]
    deliver(settings, sessions, clock, relay, 2)  # the acknowledgements

    # Monday 10:00: the agent asks a question and sets both tickets pending.
    clock.now = MONDAY_0930 + timedelta(minutes=30)
    with sessions() as write, write.begin():
        anna = write.scalars(select(User).where(User.email == "anna@example.com")).one()
        for number in (carol, dave):
            found = write.scalars(select(Ticket).where(Ticket.number == number)).one()
            conversation.reply(
                write, found, actor=anna, text="Is it plugged in?", settings=settings,
                now=clock.now, status_after="pending",
            )  # fmt: skip
    deliver(settings, sessions, clock, relay, 2)

    # 24 business hours (3 business days of 09:00-17:00) later is Thursday 10:00.
    thursday_10 = datetime(2026, 3, 5, 10, 0, tzinfo=UTC)
    for when in (datetime(2026, 3, 4, 17, 0, tzinfo=UTC), thursday_10 - timedelta(minutes=1)):
        assert pass_at(settings, sessions, clock, when) == 0
    assert pass_at(settings, sessions, clock, thursday_10) == 2
    assert pass_at(settings, sessions, clock, thursday_10 + timedelta(minutes=1)) == 0  # once
    clock.now = thursday_10 + timedelta(seconds=2)
    reminders = deliver(settings, sessions, clock, relay, 2)
    to_carol = next(m for m in reminders if m["To"] == "carol@customer.example")
    assert to_carol["Subject"] == f"Re: [HD#{carol}] Printer on fire"
    assert to_carol["In-Reply-To"] == first_id and first_id in to_carol["References"]
    assert to_carol["Auto-Submitted"].startswith("auto-")  # never answered by responders
    assert "we are still waiting for your answer" in to_carol.get_content()

    # Friday: Dave answers; his ticket opens again, which cancels its close.
    friday = datetime(2026, 3, 6, 11, 0, tzinfo=UTC)
    clock.now = friday
    gateway.send(customer_mail(f"Re: [HD#{dave}] Scanner on fire", "dave@customer.example",
                               "It was unplugged, thanks!", "<answer@customer.example>", other_id),
                 mail_from="dave@customer.example")  # fmt: skip
    assert ticket(session, dave).status == "open"

    # 40 business hours after Monday 10:00, over the weekend: the next Monday 10:00.
    next_monday = datetime(2026, 3, 9, 10, 0, tzinfo=UTC)
    for when in (datetime(2026, 3, 7, 12, 0, tzinfo=UTC), next_monday - timedelta(minutes=1)):
        assert pass_at(settings, sessions, clock, when) == 0
    assert pass_at(settings, sessions, clock, next_monday) == 1
    clock.now = next_monday + timedelta(seconds=2)
    (closing,) = deliver(settings, sessions, clock, relay, 1)
    assert closing["To"] == "carol@customer.example"
    assert "we have closed ticket" in closing.get_content()
    assert ticket(session, carol).status == "closed"
    assert ticket(session, dave).status == "open"
    assert by_rule(session, carol, "Remind the customer after 3 business days pending") == [
        ("mail", "", "carol@customer.example")
    ]
    assert by_rule(session, carol, "Close after 5 business days pending") == [
        ("status", "pending", "closed"),
        ("mail", "", "carol@customer.example"),
    ]
    assert by_rule(session, dave, "Close after 5 business days pending") == []
    # Nothing more, however long it stays closed.
    assert pass_at(settings, sessions, clock, next_monday + timedelta(days=14)) == 0


def test_rule_mail_goes_out_after_the_reply_of_the_same_change(world, session):  # type: ignore[no-untyped-def]  # fmt: skip
    settings, clock, sessions, gateway, relay = world
    with sessions() as write, write.begin():
        service.save(write, None, {
            "name": "Closed notice", "enabled": True, "trigger": "ticket.updated",
            "conditions": {"all": [{"field": "changed", "op": "has", "value": "status"},
                                   {"field": "status", "op": "is", "value": "closed"}]},
            "actions": [{"mail_requester": {"text": "Your ticket {{ ticket.ref }} is closed."}}],
        }, now=clock())  # fmt: skip
    raw = customer_mail("Printer on fire", "erin@customer.example", "Help!", "<e@c.example>")
    gateway.send(raw, mail_from="erin@customer.example")
    deliver(settings, sessions, clock, relay, 1)
    number = session.scalars(select(Ticket.number)).one()
    with sessions() as write, write.begin():
        anna = write.scalars(select(User).where(User.email == "anna@example.com")).one()
        found = write.scalars(select(Ticket).where(Ticket.number == number)).one()
        conversation.reply(write, found, actor=anna, text="Fixed it, closing.",
                           settings=settings, now=clock(), status_after="closed")  # fmt: skip
    clock.now += timedelta(seconds=2)
    reply, notice = deliver(settings, sessions, clock, relay, 2)
    assert "Fixed it, closing." in reply.get_body(preferencelist=("plain",)).get_content()
    assert f"Your ticket HD#{number} is closed." in notice.get_content()


@pytest.fixture
def relay_settings(settings, relay):  # type: ignore[no-untyped-def]
    return replace(settings, smtp_relay=relay.address)
