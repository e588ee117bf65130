"""Every kind of mail about a ticket, built once by ``outbound/ticket_mail.py``, as
it reaches the relay, on SQLite and PostgreSQL.

A customer's mail comes in through the real gateway; the acknowledgement, an
agent notification, the agent's reply and an SLA warning are queued as
descriptions (no bytes at intake), built by the outbox worker when it sends,
and checked on the aiosmtpd sink: From with the queue's name, our signed
Message-ID (the one kept on the outbox row), threading headers, the subject
tag, the automatic-mail and loop headers, the body. The descriptions and the
templates' values never hold the secret key or the relay password.
"""

from __future__ import annotations

import email
import json
from dataclasses import replace
from datetime import timedelta
from email import policy
from email.message import EmailMessage

import pytest
from sqlalchemy import select
from sqlalchemy.orm import undefer

from helpdesk.clock import utcnow
from helpdesk.db import session_factory
from helpdesk.mail.messageid import verify_message_id
from helpdesk.models import Message, OutboxMail, Ticket, User
from helpdesk.outbound.ticket_mail import TicketMail, mime_bytes
from helpdesk.sla.escalation import escalate
from helpdesk.subscribers import writing_sessions
from helpdesk.tickets import conversation
from tests.conftest import SECRET, start_gateway
from tests.test_outbound import (
    AGENT,
    SENDER,
    Clock,
    assert_crlf_only,
    customer_mail,
    deliver,
    header_names,
    make_worker,
    received,
)

RELAY_PASSWORD = "relay-password-not-for-templates"


@pytest.fixture
def desk(settings, engine, make_user):  # type: ignore[no-untyped-def]
    """The gateway, with a relay password configured; an agent of help-desk."""
    secretive = replace(settings, smtp_relay_password=RELAY_PASSWORD)
    running = start_gateway(secretive, engine)
    make_user(AGENT, "agent", ["help-desk"])
    with writing_sessions(engine, settings)() as session, session.begin():
        session.scalars(select(User).where(User.email == AGENT)).one().name = "Dana Agent"
    yield running
    running.gateway.stop()


def rows(engine) -> dict[str, OutboxMail]:  # type: ignore[no-untyped-def]
    with session_factory(engine)() as session:
        stmt = select(OutboxMail).options(undefer(OutboxMail.content)).order_by(OutboxMail.id)
        return {r.purpose: r for r in session.scalars(stmt)}


def sender(msg: EmailMessage) -> tuple[str, str]:
    [address] = msg["From"].addresses
    return address.display_name, address.addr_spec


def one(relay, subject: str) -> tuple[list[str], EmailMessage, bytes]:  # type: ignore[no-untyped-def]
    """The automatic mail with this subject the relay got."""
    [(_, rcpts, msg, data)] = [
        m for m in received(relay) if m[2]["Subject"] == subject and m[2]["Auto-Submitted"]
    ]
    return rcpts, msg, data


def test_every_ticket_mail_is_built_at_send_time_with_the_right_headers(
    desk, engine, settings, relay, relay_settings
):
    desk.send(customer_mail("<m1@customer.example>"), mail_from=SENDER)
    queued = rows(engine)
    assert set(queued) == {"acknowledgement", "notification:new_ticket"}
    for row in queued.values():
        assert row.content is None and row.spec is not None  # nothing built at intake
        text = json.dumps(row.spec)
        assert SECRET not in text and RELAY_PASSWORD not in text
        assert set(row.spec["context"]) <= {"ticket", "queue", "title", "excerpt", "sender_name"}

    with writing_sessions(engine, settings)() as session, session.begin():
        ticket = session.scalars(select(Ticket)).one()
        agent = session.scalars(select(User).where(User.email == AGENT)).one()
        conversation.reply(
            session, ticket, actor=agent, text="Restart it, please.", settings=settings,
            now=utcnow(), attachments=[("steps.txt", "text/plain", b"1. off\n2. on\n")],
        )  # fmt: skip
    with writing_sessions(engine, settings)() as session, session.begin():
        escalate(session, now=utcnow() + timedelta(days=7))  # long past every target
    queued = rows(engine)
    assert {"reply", "escalation:breach"} <= set(queued)

    clock = Clock()
    clock.advance(timedelta(days=8))  # the escalation was queued a week ahead
    deliver(make_worker(engine, relay_settings, clock))
    with session_factory(engine)() as session:
        inbound = session.scalars(select(Message).where(Message.kind == "inbound")).one()
    assert inbound.message_id == "<m1@customer.example>"

    # The acknowledgement: to the customer, threaded under their message, automatic.
    rcpts, ack, data = one(relay, "Re: [HD#1] Printer broken")
    assert rcpts == [SENDER]
    assert sender(ack) == ("Support (Help desk)", "help-desk@example.com")
    assert verify_message_id(SECRET, ack["Message-ID"]) == 1
    assert ack["Message-ID"] == queued["acknowledgement"].header_message_id
    assert ack["In-Reply-To"] == "<m1@customer.example>"
    assert ack["References"] == "<m1@customer.example>"
    assert (ack["Auto-Submitted"], ack["X-Auto-Response-Suppress"]) == ("auto-replied", "All")
    assert ack["X-Helpdesk-Loop"] == "example.com"
    body = ack.get_body(("plain",)).get_content()
    assert "opened ticket HD#1 in our Help desk queue" in body and "keep [HD#1]" in body
    assert "[HD#1]" in ack.get_body(("html",)).get_content()
    assert_crlf_only(data)

    # The notification: to the agent, tagged, automatic, not a message of the thread.
    rcpts, note, data = one(relay, "New ticket: [HD#1] Printer broken")
    assert rcpts == [AGENT]
    assert sender(note) == ("Support (Help desk)", "help-desk@example.com")
    assert verify_message_id(SECRET, note["Message-ID"]) == 1
    assert note["Message-ID"] == queued["notification:new_ticket"].header_message_id
    assert note["In-Reply-To"] is None and note["Auto-Submitted"] == "auto-replied"
    body = note.get_body(("plain",)).get_content()
    assert "New ticket: ticket [HD#1] in Help desk" in body
    assert f"Requester: Alice Example <{SENDER}>" in body and "My printer is broken." in body

    # The reply: the agent's name, threaded, not automatic, with its attachment.
    [(_, rcpts, reply, data)] = [
        m for m in received(relay) if sender(m[2])[0].startswith("Dana Agent")
    ]
    assert rcpts == [SENDER]
    assert sender(reply) == ("Dana Agent (Help desk)", "help-desk@example.com")
    assert reply["Subject"] == "Re: [HD#1] Printer broken"
    assert verify_message_id(SECRET, reply["Message-ID"]) == 1
    assert reply["In-Reply-To"] == "<m1@customer.example>"
    assert reply["References"] == "<m1@customer.example>"
    assert "auto-submitted" not in header_names(data) and "precedence" not in header_names(data)
    assert reply["X-Helpdesk-Loop"] == "example.com"
    body = reply.get_body(("plain",)).get_content()
    assert body.startswith("Restart it, please.") and "Dana Agent, Help desk" in body
    assert "Ticket [HD#1]" in body
    [attachment] = list(reply.iter_attachments())
    assert attachment.get_filename() == "steps.txt"
    assert attachment.get_content() == "1. off\n2. on\n"

    # The SLA breaches: to the queue's agent (nobody is assigned, there is no manager).
    breaches = {
        m[2]["Subject"]: m for m in received(relay) if m[2]["Subject"].startswith("SLA breached")
    }
    # (The reply answered in time: only the resolution clock breached.)
    assert set(breaches) == {"SLA breached: Resolution: [HD#1] Printer broken"}
    _, rcpts, breach, _ = breaches["SLA breached: Resolution: [HD#1] Printer broken"]
    assert rcpts == [AGENT]
    assert breach["Auto-Submitted"] == "auto-replied"
    assert verify_message_id(SECRET, breach["Message-ID"]) == 1
    body = breach.get_body(("plain",)).get_content()
    assert "on ticket [HD#1] in Help desk" in body and "Resolution target: 1440 minutes" in body


def test_the_bytes_sent_are_the_bytes_the_row_describes(desk, engine, relay, relay_settings):
    """What the worker sends is ``mime_bytes`` of the row: same headers, same body."""
    desk.send(customer_mail("<m1@customer.example>"), mail_from=SENDER)
    with session_factory(engine)() as session:
        row = session.scalars(
            select(OutboxMail).where(OutboxMail.purpose == "acknowledgement")
        ).one()
        built = mime_bytes(row)
        spec = TicketMail.from_json(row.spec)
    deliver(make_worker(engine, relay_settings, Clock()))
    [(_, _, sent, data)] = received(relay, SENDER)
    local = email.message_from_bytes(built, policy=policy.default)
    for name in ("From", "To", "Subject", "Message-ID", "Date", "In-Reply-To", "References"):
        assert sent[name] == local[name], name
    assert sent.get_body(("plain",)).get_content() == local.get_body(("plain",)).get_content()
    assert spec.subject == sent["Subject"] and spec.message_id == sent["Message-ID"]
    assert_crlf_only(data)
