"""Issue 10 rows 1, 2 and 11 over real SMTP (SQLite and PostgreSQL): our mail must not
be a way to reach strangers, and a forged agent is nobody.

Row 2: an acknowledgement echoes no display name and at most 100 characters
of the subject; none goes when the trusted MX says SPF or DMARC failed; a
global and a per-recipient-domain cap per hour hold; every acknowledgement
withheld is in the ticket's history, shown on the ticket page. Rows 1 and
11: an agent's notification carries the agent's own reply address, and only
mail sent to it (or DMARC-proven) counts as the agent's; the ticket page says
when a message claims an agent or has an ambiguous From.
"""

from __future__ import annotations

import email
import re
from dataclasses import replace
from email import policy

from sqlalchemy import select

from helpdesk.models import Message, OutboxMail, Ticket, TicketEvent
from tests.conftest import outbox_bytes, start_gateway
from tests.test_sla_escalation import sign_in

pytest_plugins = ["tests.browser_support"]


def mail(tag: str, *, sender: str, name: str = "", subject: str = "Help", extra: str = "") -> bytes:
    display = f'"{name}" <{sender}>' if name else sender
    return (
        f"{extra}From: {display}\r\nTo: help-desk@example.com\r\nSubject: {subject}\r\n"
        f"Message-ID: <{tag}@sender.example>\r\nDate: Fri, 27 Nov 2026 10:00:00 +0100\r\n"
        f"\r\nHello.\r\n"
    ).encode()


def acks(session) -> list[OutboxMail]:  # type: ignore[no-untyped-def]
    session.expire_all()
    stmt = select(OutboxMail).where(OutboxMail.purpose == "acknowledgement")
    return list(session.scalars(stmt.order_by(OutboxMail.id)))


def withheld(session, number: int) -> list[str]:  # type: ignore[no-untyped-def]
    stmt = (
        select(TicketEvent.new_value)
        .join(Ticket, Ticket.id == TicketEvent.ticket_id)
        .where(Ticket.number == number, TicketEvent.kind == "acknowledgement_withheld")
    )
    return list(session.scalars(stmt))


def test_acknowledgement_echoes_no_display_name_and_a_short_subject(gateway, session):
    subject = "BUY NOW http://spam.example/offer " + "x" * 200
    gateway.send(
        mail("spam", sender="victim42@else.example", name="Cheap pills at http://spam.example",
             subject=subject),
        mail_from="victim42@else.example",
    )  # fmt: skip
    (ack,) = acks(session)
    sent = email.message_from_bytes(outbox_bytes(ack), policy=policy.default)
    assert ack.rcpt_tos == ["victim42@else.example"]
    body = sent.get_body(("plain",)).get_content() + sent.get_body(("html",)).get_content()
    assert "Cheap pills" not in body and "Cheap pills" not in str(sent)
    assert body.startswith("Hello,")
    # The subject as tagged: "Re: [HD#1] " and at most 100 characters of the customer's.
    customer_part = re.sub(r"^Re: \[HD#\d+\] ", "", sent["Subject"])
    assert len(customer_part) == 100 and customer_part.endswith("…")
    assert subject[:99] in body  # the body's quote is cut the same way
    assert subject not in body


def test_no_acknowledgement_when_the_trusted_mx_says_spf_or_dmarc_failed(gateway, session):
    spf = "Authentication-Results: mx.example.com; spf=fail smtp.mailfrom=else.example\r\n"
    dmarc = "Authentication-Results: mx.example.com; dmarc=fail header.from=other.example\r\n"
    untrusted = "Authentication-Results: mx.evil.example; spf=fail smtp.mailfrom=x.example\r\n"
    gateway.send(mail("spf", sender="a@else.example", extra=spf), mail_from="a@else.example")
    gateway.send(mail("dmarc", sender="b@other.example", extra=dmarc), mail_from="b@other.example")
    gateway.send(mail("untrusted", sender="c@x.example", extra=untrusted), mail_from="c@x.example")
    assert [ack.rcpt_tos for ack in acks(session)] == [["c@x.example"]]
    assert withheld(session, 1) == ["SPF failed at the trusted MX"]
    assert withheld(session, 2) == ["DMARC failed at the trusted MX"]
    assert withheld(session, 3) == []
    flags = session.scalars(select(Message.flags).where(Message.kind == "inbound")).all()
    assert [sorted(f) for f in flags] == [["spf_fail"], ["dmarc_fail"], []]


def test_acknowledgements_per_hour_are_capped_in_all_and_per_domain(settings, engine, session):
    capped = replace(settings, ack_max_per_hour=3, ack_max_per_domain_per_hour=2)
    running = start_gateway(capped, engine)
    try:
        senders = ["a@one.example", "b@one.example", "c@one.example", "d@two.example",
                   "e@three.example"]  # fmt: skip
        for index, sender in enumerate(senders):
            running.send(mail(f"cap-{index}", sender=sender), mail_from=sender)
    finally:
        running.stop()
    # a, b (one.example's 2); c is over one.example's cap; d is the third in all; e is over.
    assert [ack.rcpt_tos[0] for ack in acks(session)] == [
        "a@one.example", "b@one.example", "d@two.example",
    ]  # fmt: skip
    assert withheld(session, 3) == ["2 acknowledgements this hour to @one.example"]
    assert withheld(session, 5) == ["3 acknowledgements this hour in all"]
    assert session.scalar(select(Ticket.id).where(Ticket.number == 5)) is not None


def test_withheld_acknowledgement_and_sender_doubt_are_on_the_ticket_page(
    gateway, client, make_user
):
    make_user("admin@example.com", "admin")
    forged = mail("forged", sender="admin@example.com", name="Admin", subject="Refund approved")
    gateway.send(forged, mail_from="evil@evil.example")
    ambiguous = (
        b"From: admin@example.com <attacker@evil.example>\r\nTo: help-desk@example.com\r\n"
        b"Subject: Invoice\r\nMessage-ID: <ambiguous@evil.example>\r\n\r\nPay now.\r\n"
    )
    gateway.send(ambiguous, mail_from="attacker@evil.example")
    sign_in(client, "admin@example.com")
    first = client.get("/tickets/1").get_data(as_text=True)
    assert "spoofed_agent" in first
    assert "Claims to be from agent admin@example.com without proof" in first
    assert "acknowledgement_withheld" in first
    assert "the sender claims an agent&#39;s address without proof" in first
    second = client.get("/tickets/2").get_data(as_text=True)
    assert "ambiguous_from" in second and "Ambiguous From" in second
    assert "attacker@evil.example" in second


def test_notification_reply_address_proves_the_agent(gateway, session, make_user):
    """The Reply-To of the new-ticket notification is the agent's own address; a reply
    to it is the agent's, the same From without it is spoofed_agent."""
    make_user("bob@example.com", "agent", ["help-desk"])
    gateway.send(mail("first", sender="alice@customer.example", subject="Printer"),
                 mail_from="alice@customer.example")  # fmt: skip
    session.expire_all()
    notification = session.scalars(
        select(OutboxMail).where(OutboxMail.purpose == "notification:new_ticket")
    ).one()
    sent = email.message_from_bytes(outbox_bytes(notification), policy=policy.default)
    reply_to = str(sent["Reply-To"])
    assert re.fullmatch(r"help-desk\+a\.\d+\.[0-9a-f]{20}@example\.com", reply_to)
    answer = (
        f"From: Bob <bob@example.com>\r\nTo: {reply_to}\r\nSubject: Re: [HD#1] Printer\r\n"
        f"In-Reply-To: {sent['Message-ID']}\r\nMessage-ID: <bob-answer@example.com>\r\n"
        "\r\nOn it.\r\n"
    ).encode()
    gateway.send(answer, mail_from="bob@example.com", to=[reply_to])
    forged = answer.replace(b"bob-answer", b"bob-forged").replace(
        reply_to.encode(), b"help-desk@example.com"
    )
    gateway.send(forged, mail_from="bob@example.com")
    session.expire_all()
    rows = session.execute(
        select(Message.message_id, Message.author_id, Message.flags)
        .where(Message.kind == "inbound")
        .order_by(Message.id)
    ).all()
    assert [(mid, author is not None, sorted(flags)) for mid, author, flags in rows] == [
        ("<first@sender.example>", False, []),
        ("<bob-answer@example.com>", True, []),
        ("<bob-forged@example.com>", False, ["spoofed_agent"]),
    ]


def test_forged_and_ambiguous_senders_are_flagged_in_a_browser(gateway, make_user, open_agent):
    from playwright.sync_api import expect

    make_user("admin@example.com", "admin")
    gateway.send(
        mail("forged-b", sender="admin@example.com", name="Admin", subject="Refund approved"),
        mail_from="evil@evil.example",
    )
    gateway.send(
        b"From: a@x.example)<mallory@evil.example>\r\nTo: help-desk@example.com\r\n"
        b"Subject: Invoice\r\nMessage-ID: <ambiguous-b@evil.example>\r\n\r\nPay now.\r\n",
        mail_from="mallory@evil.example",
    )
    agent = open_agent("admin")
    agent.sign_in("admin@example.com")
    page = agent.page
    agent.open("/tickets/1")
    message = page.locator(".message.inbound").first
    expect(message.locator(".flag", has_text="spoofed_agent")).to_be_visible()
    expect(message.locator(".sender-doubt")).to_contain_text("without proof")
    expect(page.locator(".history")).to_contain_text("acknowledgement_withheld")
    agent.open("/tickets/2")
    message = page.locator(".message.inbound").first
    expect(message.locator(".flag", has_text="ambiguous_from")).to_be_visible()
    expect(message.locator(".sender-doubt")).to_contain_text("mallory@evil.example")
    assert agent.guard.problems() == {}
