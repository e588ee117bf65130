"""The gateway end to end over loopback SMTP: a mail becomes a ticket, readable via the API."""

from __future__ import annotations

import smtplib

import pytest
from sqlalchemy import func, select

from helpdesk.models import Message, OutboxMail, RawMail, Ticket
from tests.conftest import outbox_bytes

MAIL = (
    b"From: Alice Example <alice@customer.example>\r\n"
    b"To: help-desk@example.com\r\n"
    b"Subject: =?utf-8?q?Drucker_kaputt_=C3=BCberall?=\r\n"
    b"Message-ID: <first@customer.example>\r\n"
    b"Date: Thu, 26 Nov 2026 09:00:00 +0100\r\n"
    b"\r\n"
    b"My printer is broken.\r\n"
)


def test_mail_becomes_ticket_with_acknowledgement(gateway, session):
    refused = gateway.send(MAIL, mail_from="alice@customer.example")
    assert refused == {}
    ticket = session.scalars(select(Ticket)).one()
    assert ticket.subject == "Drucker kaputt überall"
    assert ticket.queue.slug == "help-desk"
    assert ticket.requester.email == "alice@customer.example"
    assert ticket.status == "new"
    kinds = session.scalars(select(Message.kind).order_by(Message.id)).all()
    assert kinds == ["inbound", "outbound"]
    ack = session.scalars(select(OutboxMail)).one()
    assert ack.purpose == "acknowledgement"
    assert ack.rcpt_tos == ["alice@customer.example"]
    assert b"Auto-Submitted: auto-replied" in outbox_bytes(ack)
    assert b"[HD#1]" in outbox_bytes(ack)


def test_duplicate_delivery_is_stored_once(gateway, session):
    gateway.send(MAIL)
    gateway.send(MAIL)  # the same bytes again: no second row
    assert session.scalar(select(func.count()).select_from(RawMail)) == 1
    # The same message relayed again, with an extra trace header in front: kept
    # (other bytes), applied as a duplicate of the first, no second message.
    gateway.send(b"Received: from relay2.example by mx; Thu, 26 Nov 2026 09:01:00 +0100\r\n" + MAIL)
    rows = session.scalars(select(RawMail).order_by(RawMail.id)).all()
    assert [row.state for row in rows] == ["processed", "duplicate"]
    assert rows[0].ticket_id == rows[1].ticket_id is not None
    assert session.scalar(select(func.count()).select_from(Ticket)) == 1
    inbound = select(func.count()).select_from(Message).where(Message.kind == "inbound")
    assert session.scalar(inbound) == 1


def test_unknown_and_foreign_recipients_are_refused(gateway):
    with gateway.smtp() as client:
        client.ehlo()
        client.mail("a@customer.example")
        assert client.rcpt("nobody@example.com")[0] == 550
        code, reply = client.rcpt("someone@elsewhere.example")
        assert (code, reply[:5]) == (550, b"5.7.1")
        assert client.rcpt("help-desk+anything@example.com")[0] == 250


def test_api_lists_and_shows_the_ticket(gateway, client, make_user):
    gateway.send(MAIL)
    token = make_user("agent@example.com", "agent", ["help-desk"])
    headers = {"Authorization": f"Bearer {token}"}
    listing = client.get("/api/v1/tickets", headers=headers).get_json()
    assert listing["total"] == 1
    number = listing["tickets"][0]["number"]
    detail = client.get(f"/api/v1/tickets/{number}", headers=headers).get_json()
    assert [m["kind"] for m in detail["messages"]] == ["inbound", "outbound"]
    assert detail["messages"][0]["text"].strip() == "My printer is broken."


@pytest.mark.parametrize("queue_slug,visible", [("help-desk", True), ("tech-support", False)])
def test_api_respects_queue_rights(gateway, client, make_user, queue_slug, visible):
    gateway.send(MAIL)
    token = make_user("agent@example.com", "agent", [queue_slug])
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/tickets", headers=headers).get_json()["total"] == int(visible)
    assert client.get("/api/v1/tickets/1", headers=headers).status_code == (200 if visible else 404)


def test_api_requires_a_token(client):
    assert client.get("/api/v1/tickets").status_code == 401
    bad = client.get("/api/v1/tickets", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401


def test_too_many_recipients(gateway):
    with gateway.smtp() as client:
        client.ehlo()
        client.mail("a@customer.example")
        for i in range(100):
            assert client.rcpt(f"help-desk+{i}@example.com")[0] == 250
        assert client.rcpt("help-desk+extra@example.com")[0] == 452


def test_oversize_message_is_refused(gateway):
    with gateway.smtp() as client:
        with pytest.raises(smtplib.SMTPSenderRefused) as info:
            client.sendmail(
                "a@customer.example", ["help-desk@example.com"], b"x" * (26 * 1024 * 1024)
            )
        assert info.value.smtp_code == 552


def test_value_the_database_refuses_is_kept_as_failed_not_retried_forever(gateway, session):
    """Regression: a 330-character envelope sender with no From header made
    PostgreSQL refuse the contact (String(320)) and the gateway answer 451 on
    every retry, storing nothing. Now the raw mail is kept (failed there)."""
    sender = "s" * 330 + "@customer.example"
    raw = b"To: help-desk@example.com\r\nSubject: no from\r\nMessage-ID: <long@x>\r\n\r\nhi\r\n"
    assert gateway.send(raw, mail_from=sender) == {}
    row = session.scalars(select(RawMail)).one()
    assert row.state in ("processed", "failed")
    if row.state == "failed":
        assert row.error.startswith("DataError")
