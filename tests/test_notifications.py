"""Agent notifications by email, delivered by the outbox worker to a real SMTP sink.

On SQLite and PostgreSQL: agents of a queue hear of a new ticket there (unless
they opted out, wrote it themselves, or their address bounces), the assignee
hears of a customer's reply, and a notification is never a message of the
ticket's thread. An agent answering a notification by email lands in the
ticket as that agent.
"""

from __future__ import annotations

from sqlalchemy import select

from helpdesk.clock import utcnow
from helpdesk.db import session_factory
from helpdesk.mail.messageid import verify_message_id
from helpdesk.models import RawMail, Ticket, User
from helpdesk.subscribers import writing_sessions
from helpdesk.tickets import contacts, lifecycle
from tests.conftest import SECRET
from tests.test_outbound import (
    SENDER,
    Clock,
    count,
    customer_mail,
    deliver,
    header_names,
    make_worker,
    messages,
    outbox,
    received,
)

AGENT = "agent@example.com"
COLLEAGUE = "colleague@example.com"
ELSEWHERE = "elsewhere@example.com"


def _update_user(engine, email: str, **values: object) -> None:  # type: ignore[no-untyped-def]
    with session_factory(engine, write=True)() as session, session.begin():
        user = session.scalars(select(User).where(User.email == email)).one()
        for name, value in values.items():
            setattr(user, name, value)


def _assign(engine, settings, email: str, number: int = 1) -> None:  # type: ignore[no-untyped-def]
    """The agent takes the ticket (assigning themself: no "assigned" notification)."""
    with writing_sessions(engine, settings)() as session, session.begin():
        user = session.scalars(select(User).where(User.email == email)).one()
        ticket = session.scalars(select(Ticket).where(Ticket.number == number)).one()
        lifecycle.assign(session, ticket, user, actor=user, now=utcnow())


def _follow_up(gateway, body: str = "It still does not work.", mid: str = "<m2@customer.example>"):  # type: ignore[no-untyped-def]
    gateway.send(
        customer_mail(
            mid, subject="Re: Printer broken", body=body,
            headers="In-Reply-To: <m1@customer.example>\r\nReferences: <m1@customer.example>",
        ),
        mail_from=SENDER,
    )  # fmt: skip


def test_queue_agents_are_told_of_a_new_ticket(gateway, engine, relay, relay_settings, make_user):
    make_user(AGENT, "agent", ["help-desk"])
    make_user(ELSEWHERE, "agent", ["tech-support"])
    gateway.send(customer_mail("<m1@customer.example>"), mail_from=SENDER)

    [row] = outbox(engine, "notification:new_ticket")
    assert row.rcpt_tos == [AGENT]
    assert row.message_id is None  # not a message of the thread
    assert row.ticket_id is not None
    assert deliver(make_worker(engine, relay_settings, Clock())) == 2

    assert sorted(rcpt for _, rcpts, _ in relay.messages for rcpt in rcpts) == sorted(
        [SENDER, AGENT]
    )
    [(mail_from, _, msg, data)] = received(relay, AGENT)
    assert mail_from == "help-desk@example.com"
    assert msg["Subject"] == "New ticket: [HD#1] Printer broken"
    assert verify_message_id(SECRET, msg["Message-ID"]) == 1
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Helpdesk-Loop"] == "example.com"
    body = msg.get_body(("plain",)).get_content()
    assert "My printer is broken." in body
    assert SENDER in body
    assert b"\n" not in data.replace(b"\r\n", b"")

    thread = messages(engine)
    assert [m.kind for m in thread] == ["inbound", "outbound"]
    assert all(AGENT not in m.to_addresses for m in thread)
    assert msg["Message-ID"] not in {m.message_id for m in thread}


def test_no_new_ticket_notification_for_an_agent_who_opted_out(
    gateway, engine, relay, relay_settings, make_user
):
    make_user(AGENT, "agent", ["help-desk"])
    _update_user(engine, AGENT, notify_new_ticket=False)
    gateway.send(customer_mail("<m1@customer.example>"), mail_from=SENDER)
    assert outbox(engine, "notification:new_ticket") == []
    assert [r.purpose for r in outbox(engine)] == ["acknowledgement"]
    deliver(make_worker(engine, relay_settings, Clock()))
    assert received(relay, AGENT) == []


def test_no_notification_to_a_bouncing_agent_address(gateway, engine, relay_settings, make_user):
    make_user(AGENT, "agent", ["help-desk"])
    make_user(COLLEAGUE, "agent", ["help-desk"])
    with session_factory(engine, write=True)() as session, session.begin():
        contact = contacts.get_or_create(session, AGENT, "", now=utcnow())
        contact.bouncing_since = utcnow()
    gateway.send(customer_mail("<m1@customer.example>"), mail_from=SENDER)
    assert [r.rcpt_tos for r in outbox(engine, "notification:new_ticket")] == [[COLLEAGUE]]


def test_an_agent_writing_in_is_not_told_of_their_own_ticket(
    gateway, engine, relay_settings, make_user
):
    make_user(AGENT, "agent", ["help-desk"])
    make_user(COLLEAGUE, "agent", ["help-desk"])
    # Proven by the trusted MX (tests' HELPDESK_TRUSTED_AUTHSERV_ID): DMARC passed.
    proof = "Authentication-Results: mx.example.com; dmarc=pass header.from=example.com"
    gateway.send(customer_mail("<a1@example.com>", sender=AGENT, headers=proof), mail_from=AGENT)
    assert count(engine, Ticket) == 1
    assert outbox(engine, "acknowledgement") == []
    assert [r.rcpt_tos for r in outbox(engine, "notification:new_ticket")] == [[COLLEAGUE]]


def test_the_assignee_is_told_of_a_customer_reply(
    gateway, engine, relay, settings, relay_settings, make_user
):
    make_user(AGENT, "agent", ["help-desk"])
    make_user(COLLEAGUE, "agent", ["help-desk"])
    gateway.send(customer_mail("<m1@customer.example>"), mail_from=SENDER)
    _assign(engine, settings, AGENT)
    _follow_up(gateway)

    assert count(engine, Ticket) == 1
    [row] = outbox(engine, "notification:customer_reply")
    assert row.rcpt_tos == [AGENT]
    assert row.message_id is None
    clock = Clock()
    deliver(make_worker(engine, relay_settings, clock))
    replies = [m for m in received(relay, AGENT) if m[2]["Subject"].startswith("Customer")]
    [(_, rcpts, msg, _)] = replies
    assert rcpts == [AGENT]
    assert msg["Subject"] == "Customer replied: [HD#1] Printer broken"
    assert verify_message_id(SECRET, msg["Message-ID"]) == 1
    assert "It still does not work." in msg.get_body(("plain",)).get_content()
    assert received(relay, COLLEAGUE)[0][2]["Subject"].startswith("New ticket")
    assert len(received(relay, COLLEAGUE)) == 1  # the new-ticket one only
    assert [m.kind for m in messages(engine)] == ["inbound", "outbound", "inbound"]


def test_no_customer_reply_notification_without_an_assignee_or_when_opted_out(
    gateway, engine, settings, make_user
):
    make_user(AGENT, "agent", ["help-desk"])
    gateway.send(customer_mail("<m1@customer.example>"), mail_from=SENDER)
    _follow_up(gateway)
    assert outbox(engine, "notification:customer_reply") == []
    _assign(engine, settings, AGENT)
    _update_user(engine, AGENT, notify_customer_reply=False)
    _follow_up(gateway, body="Anyone there?", mid="<m3@customer.example>")
    assert outbox(engine, "notification:customer_reply") == []
    assert [m.kind for m in messages(engine)] == ["inbound", "outbound", "inbound", "inbound"]


def test_an_agent_answering_a_notification_lands_in_the_ticket(
    gateway, engine, relay, relay_settings, make_user
):
    make_user(AGENT, "agent", ["help-desk"])
    gateway.send(customer_mail("<m1@customer.example>"), mail_from=SENDER)
    deliver(make_worker(engine, relay_settings, Clock()))
    [(_, _, note, _)] = received(relay, AGENT)
    # The agent's client answers to the notification's Reply-To: the agent's own address.
    reply_to = str(note["Reply-To"])
    assert reply_to.startswith("help-desk+a.")
    answer = (
        f"From: Agent <{AGENT}>\r\n"
        f"To: {reply_to}\r\n"
        f"Subject: Re: {note['Subject']}\r\n"
        "Message-ID: <a1@example.com>\r\n"
        f"In-Reply-To: {note['Message-ID']}\r\n"
        f"References: {note['Message-ID']}\r\n"
        "\r\n"
        "I'll take this one.\r\n"
    ).encode()
    gateway.send(answer, mail_from=AGENT, to=[reply_to])

    assert count(engine, Ticket) == 1
    thread = messages(engine)
    assert [m.kind for m in thread] == ["inbound", "outbound", "inbound"]
    with session_factory(engine)() as session:
        agent_id = session.scalars(select(User.id).where(User.email == AGENT)).one()
    assert thread[2].author_id == agent_id
    assert thread[2].contact_id is None
    assert outbox(engine, "notification:customer_reply") == []
    assert "loop" not in thread[2].flags
    assert "auto-submitted" not in header_names(answer)


def test_a_broken_ticket_subject_does_not_lose_the_customer_reply(
    gateway, engine, settings, make_user
):
    """An admin edit left LF in the subject: the follow-up still lands in the ticket."""
    make_user(AGENT, "agent", ["help-desk"])
    gateway.send(customer_mail("<m1@customer.example>"), mail_from=SENDER)
    _assign(engine, settings, AGENT)
    with session_factory(engine, write=True)() as session, session.begin():
        session.scalars(select(Ticket)).one().subject = "Printer\nBcc: evil@x.example"
    _follow_up(gateway)
    with session_factory(engine)() as session:
        states = session.scalars(select(RawMail.state).order_by(RawMail.id)).all()
    assert states == ["processed", "processed"]
    assert [m.kind for m in messages(engine)] == ["inbound", "outbound", "inbound"]
    assert outbox(engine, "notification:customer_reply") == []  # skipped, and logged
    for row in outbox(engine):
        assert "evil" not in " ".join(row.rcpt_tos)
