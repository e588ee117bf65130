"""Replies thread under the customer's own message, and mail about notifications
stays out of the customer's thread (issue #18, items 2 and 3).

Over real SMTP on SQLite and PostgreSQL: a customer writes, an auto-reply and a
bounce about our acknowledgement arrive on the ticket, and the customer writes
again; the agent's reply must answer the customer's newest message (not the
robot's) and carry the whole chain in References. A bounce and an out-of-office
answering an agent notification belong to that notification: recorded on its
outbox row and on the agent's address, never shown as a customer message.
"""

from __future__ import annotations

import email
from email import policy

from sqlalchemy import select

from helpdesk.db import session_factory
from helpdesk.models import Contact, Message, OutboxMail, RawMail
from tests.test_web_smoke import csrf, sign_in

SENDER = "alice@customer.example"
AGENT = "agent@example.com"


def customer_mail(mid: str, *, subject: str = "Printer broken", headers: str = "") -> bytes:
    extra = f"{headers}\r\n" if headers else ""
    return (
        f"From: Alice <{SENDER}>\r\nTo: help-desk@example.com\r\nSubject: {subject}\r\n"
        f"Message-ID: {mid}\r\n{extra}\r\nMessage {mid}.\r\n"
    ).encode()


def auto_reply(mid: str, in_reply_to: str) -> bytes:
    return (
        f"From: Alice <{SENDER}>\r\nTo: help-desk@example.com\r\n"
        "Subject: Automatic reply: Printer broken\r\nAuto-Submitted: auto-replied\r\n"
        f"Message-ID: {mid}\r\nIn-Reply-To: {in_reply_to}\r\nReferences: {in_reply_to}\r\n"
        "\r\nI am out of the office until Monday.\r\n"
    ).encode()


def bounce(mid: str, original_mid: str, recipient: str, *, status: str = "5.1.1") -> bytes:
    boundary = "BOUNDARY"
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.customer.example>\r\n"
        "To: help-desk@example.com\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: {mid}\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
        f"\r\n--{boundary}\r\nContent-Type: text/plain\r\n\r\nThe mail could not be delivered.\r\n"
        f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.customer.example\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: {status}\r\n"
        f"\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: help-desk@example.com\r\nTo: {recipient}\r\nMessage-ID: {original_mid}\r\n"
        f"\r\n--{boundary}--\r\n"
    ).encode()


def outbox_rows(engine, purpose: str) -> list[OutboxMail]:  # type: ignore[no-untyped-def]
    with session_factory(engine)() as session:
        return list(
            session.scalars(
                select(OutboxMail).where(OutboxMail.purpose == purpose).order_by(OutboxMail.id)
            )
        )


def thread(engine) -> list[Message]:  # type: ignore[no-untyped-def]
    with session_factory(engine)() as session:
        return list(session.scalars(select(Message).order_by(Message.id)))


def sent_headers(engine, settings, purpose: str) -> email.message.EmailMessage:  # type: ignore[no-untyped-def]
    """The headers of the newest outbox mail of ``purpose``, as the worker would send it."""
    from helpdesk.outbound.ticket_mail import mime_bytes

    row = outbox_rows(engine, purpose)[-1]
    with session_factory(engine)() as session:
        data = mime_bytes(session.get(OutboxMail, row.id))
    return email.message_from_bytes(data, policy=policy.default)


def test_a_reply_answers_the_customers_newest_own_message(
    gateway, engine, settings, client, make_user
):
    make_user(AGENT, "agent", ["help-desk"])
    gateway.send(customer_mail("<m1@customer.example>"), mail_from=SENDER)
    ack = thread(engine)[1]
    assert ack.kind == "outbound"
    # The customer answers our acknowledgement (their client keeps the chain) ...
    gateway.send(
        customer_mail(
            "<m2@customer.example>", subject="Re: [HD#1] Printer broken",
            headers=f"In-Reply-To: {ack.message_id}\r\n"
            f"References: <m1@customer.example> {ack.message_id}",
        ),
        mail_from=SENDER,
    )  # fmt: skip
    # ... then robots write on the ticket: an out-of-office and a bounce.
    gateway.send(auto_reply("<ooo@customer.example>", ack.message_id), mail_from=SENDER)
    gateway.send(
        bounce("<dsn1@mx.customer.example>", ack.message_id, "cc-gone@customer.example"),
        mail_from="",
    )
    inbound = [m for m in thread(engine) if m.kind == "inbound"]
    assert [m.message_id for m in inbound][:2] == ["<m1@customer.example>", "<m2@customer.example>"]
    assert "<ooo@customer.example>" in [m.message_id for m in inbound]

    sign_in(client, AGENT)
    page = client.get("/tickets/1")
    last = thread(engine)[-1].id
    response = client.post(
        "/tickets/1/reply",
        data={"body": "Try turning it off and on.", "csrf_token": csrf(page.data), "seen": last},
    )
    assert response.status_code == 302

    sent = sent_headers(engine, settings, "reply")
    assert sent["In-Reply-To"] == "<m2@customer.example>"
    assert sent["References"].split() == [
        "<m1@customer.example>",
        ack.message_id,
        "<m2@customer.example>",
    ]


def test_references_keep_the_root_when_the_chain_is_long(
    gateway, engine, settings, client, make_user
):
    make_user(AGENT, "agent", ["help-desk"])
    chain = [f"<c{i}@customer.example>" for i in range(40)]
    gateway.send(
        customer_mail(
            "<last@customer.example>",
            headers=f"In-Reply-To: {chain[-1]}\r\nReferences: {' '.join(chain)}",
        ),
        mail_from=SENDER,
    )
    sign_in(client, AGENT)
    page = client.get("/tickets/1")
    client.post(
        "/tickets/1/reply",
        data={"body": "Hello.", "csrf_token": csrf(page.data), "seen": thread(engine)[-1].id},
    )
    references = sent_headers(engine, settings, "reply")["References"].split()
    assert references[0] == chain[0]  # the root is kept
    assert references[-1] == "<last@customer.example>"
    assert references[-2] == chain[-1]
    assert len(references) <= 21


def test_bounces_and_auto_replies_to_notifications_stay_out_of_the_thread(
    gateway, engine, settings, make_user
):
    make_user(AGENT, "agent", ["help-desk"])
    gateway.send(customer_mail("<m1@customer.example>"), mail_from=SENDER)
    [notification] = outbox_rows(engine, "notification:new_ticket")
    notification_id = sent_headers(engine, settings, "notification:new_ticket")["Message-ID"]

    gateway.send(
        (
            f"From: Agent <{AGENT}>\r\nTo: help-desk@example.com\r\n"
            "Subject: Automatic reply: New ticket\r\nAuto-Submitted: auto-replied\r\n"
            f"Message-ID: <ooo-agent@example.com>\r\nIn-Reply-To: {notification_id}\r\n"
            "\r\nI am on holiday.\r\n"
        ).encode(),
        mail_from=AGENT,
    )
    gateway.send(bounce("<dsn2@mx.example.com>", notification_id, AGENT), mail_from="")

    assert [m.kind for m in thread(engine)] == ["inbound", "outbound"]  # nothing added
    with session_factory(engine)() as session:
        row = session.get(OutboxMail, notification.id)
        assert "auto-reply" in row.feedback
        assert "bounced" in row.feedback and "5.1.1" in row.feedback
        contact = session.scalars(select(Contact).where(Contact.email == AGENT)).one()
        assert contact.bouncing_since is not None  # later notifications skip the address
        reasons = session.scalars(select(RawMail.error).order_by(RawMail.id)).all()
    assert reasons[1:] == ["notification_auto_reply", "notification_bounce"]

    # The next ticket's notification skips the bouncing address.
    gateway.send(customer_mail("<n1@customer.example>", subject="Other"), mail_from=SENDER)
    assert len(outbox_rows(engine, "notification:new_ticket")) == 1
