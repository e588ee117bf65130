"""The agent's day in a real browser (Debian's chromium, headless, via Playwright)
against the real web app on loopback: sign in through the form, find a ticket
that arrived by mail through the real gateway, triage it from the queue list,
answer it with a canned response, and see the reply reach the test relay
threaded. Also the collision hint between two agents in two browser contexts.
"""

from __future__ import annotations

import email
import re
from email import policy
from email.message import EmailMessage

import pytest
from sqlalchemy import select

from helpdesk.accounts.users import by_email
from helpdesk.clock import utcnow
from helpdesk.db import session_factory
from helpdesk.models import Message, Ticket
from helpdesk.subscribers import writing_sessions
from helpdesk.tickets import canned
from mailgate.outbox_sender import OutboxWorker

pytest_plugins = ["tests.browser_support"]
pytestmark = pytest.mark.slow

CUSTOMER_ID = "<printer-1@customer.example>"
POLL_MS = 15_000  # app.js polls presence this often


def customer_mail(subject: str, body: str, message_id: str = CUSTOMER_ID) -> bytes:
    mail = EmailMessage()
    mail["From"] = "Carol Customer <carol@customer.example>"
    mail["To"] = "help-desk@example.com"
    mail["Subject"] = subject
    mail["Message-ID"] = message_id
    mail.set_content(body)
    return mail.as_bytes(policy=policy.SMTP)


def the_ticket(session) -> Ticket:  # type: ignore[no-untyped-def]
    session.expire_all()
    return session.scalars(select(Ticket)).one()


def agent_replies(session, ticket: Ticket) -> list[Message]:  # type: ignore[no-untyped-def]
    session.expire_all()
    stmt = select(Message).where(
        Message.ticket_id == ticket.id, Message.kind == "outbound", Message.author_id.is_not(None)
    )
    return list(session.scalars(stmt.order_by(Message.id)))


def deliver_outbox(engine, relay_settings) -> None:  # type: ignore[no-untyped-def]
    worker = OutboxWorker(writing_sessions(engine, relay_settings), relay_settings)
    for _ in range(10):  # bounded: each round takes what is due
        if worker.run_once() == 0:
            return
    pytest.fail("the outbox did not drain")


def test_sign_in_triage_and_reply_by_mail(
    gateway, relay, relay_settings, engine, session, make_user, open_agent
):
    from playwright.sync_api import expect

    gateway.send(
        customer_mail("Printer on fire", "The printer on floor 3 is smoking.\n"),
        mail_from="carol@customer.example",
    )
    make_user("agent@example.com", "agent", ["help-desk"])
    with session_factory(engine, write=True)() as write, write.begin():
        canned.create(
            write,
            title="Acknowledge",
            body="Thank you for telling us; we are on it.",
            queue=None,
            now=utcnow(),
        )
    number = the_ticket(session).number

    agent = open_agent("agent")
    page = agent.page
    agent.sign_in("agent@example.com")
    expect(page.get_by_role("heading", name="My tickets")).to_be_visible()

    # The queue list shows the ticket that came in by mail.
    agent.click_and_load(page.locator('aside a[href="/queues/help-desk"]'))
    row = page.locator("table.tickets tbody tr", has_text="Printer on fire")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Carol Customer")
    agent.screenshot("01-queue-list")

    # Triage from the list: select it, assign it to myself, then set its status.
    row.get_by_label(f"Select ticket {number}").check()
    page.get_by_label("Bulk action").select_option("assign")
    page.get_by_label("Bulk value").select_option("agent@example.com")
    agent.click_and_load(page.get_by_role("button", name="Apply"))
    expect(page.locator(".flash.info")).to_have_text("Updated 1 ticket(s).")
    expect(row).to_contain_text("agent@example.com")
    row.get_by_label(f"Select ticket {number}").check()
    page.get_by_label("Bulk action").select_option("status")
    page.get_by_label("Bulk value").select_option("pending")
    agent.click_and_load(page.get_by_role("button", name="Apply"))
    expect(row.locator(".badge.status")).to_have_text("pending")
    agent.screenshot("02-queue-after-triage")
    ticket = the_ticket(session)
    assert (ticket.assignee.email, ticket.status) == ("agent@example.com", "pending")

    # Open it, start from the canned response, add a line, send.
    agent.click_and_load(row.get_by_role("link", name="Printer on fire"))
    expect(page.locator("h1")).to_contain_text("Printer on fire")
    expect(page.locator(".message.inbound")).to_contain_text("floor 3 is smoking")
    page.get_by_label("Canned response").select_option(label="Acknowledge")
    reply = page.get_by_label("Reply", exact=True)
    expect(reply).to_have_value("Thank you for telling us; we are on it.")
    reply.press("End")
    reply.press_sequentially("\n\nPlease switch it off at the wall.")
    agent.screenshot("03-ticket-before-reply")
    agent.click_and_load(page.get_by_role("button", name="Send reply"))
    expect(page.locator(".flash.info")).to_have_text("Reply queued for delivery.")
    sent = page.locator(".message.outbound", has_text="switch it off at the wall")
    expect(sent).to_have_count(1)

    # The worker delivers it to the relay, threaded under the customer's mail.
    deliver_outbox(engine, relay_settings)
    replies = [
        (rcpts, email.message_from_bytes(raw, policy=policy.default))
        for _sender, rcpts, raw in relay.messages
        if b"switch it off at the wall" in raw
    ]
    assert len(replies) == 1, [m[1]["Subject"] for m in replies]
    rcpts, mail = replies[0]
    assert rcpts == ["carol@customer.example"]
    assert mail["In-Reply-To"] == CUSTOMER_ID
    assert CUSTOMER_ID in mail["References"]
    assert f"[HD#{number}]" in mail["Subject"]
    assert "Printer on fire" in mail["Subject"]
    body = mail.get_body(("plain",)).get_content()
    assert "Thank you for telling us; we are on it." in body

    page.reload()
    expect(sent.locator(".delivery")).to_have_text("sent")
    agent.screenshot("04-ticket-after-delivery")
    assert agent.guard.problems() == {}
    assert agent.guard.remote_requests == []


def test_collision_hint_and_held_reply(gateway, session, make_user, open_agent):
    from playwright.sync_api import expect

    gateway.send(customer_mail("Shared mailbox gone", "Where did it go?\n"))
    make_user("first@example.com", "agent", ["help-desk"])
    make_user("second@example.com", "agent", ["help-desk"])
    ticket = the_ticket(session)
    path = f"/tickets/{ticket.number}"
    first_id = by_email(session, "first@example.com").id
    second_id = by_email(session, "second@example.com").id

    first, second = open_agent("first"), open_agent("second")
    first.page.clock.install()  # so the test can run app.js's presence poll on demand
    first.sign_in("first@example.com")
    second.sign_in("second@example.com")
    first.open(path)
    collision = first.page.locator("#collision")
    expect(collision).to_be_hidden()
    second.open(path)

    # The poll notices the second agent...
    first.page.clock.run_for(POLL_MS + 500)
    expect(collision).to_have_text("Also viewing: second@example.com")
    # ...and so does a reload, rendered by the server.
    first.page.reload()
    expect(collision).to_be_visible()
    expect(collision).to_contain_text("Also viewing: second@example.com")
    first.screenshot("05-collision-also-viewing")

    # The second agent replies first; the first agent's reply is held back.
    second.page.get_by_label("Reply", exact=True).fill("I am on it. (second)")
    second.click_and_load(second.page.get_by_role("button", name="Send reply"))
    expect(second.page.locator(".flash.info")).to_have_text("Reply queued for delivery.")

    first.page.get_by_label("Reply", exact=True).fill("Restored it for you. (first)")
    first.click_and_load(first.page.get_by_role("button", name="Send reply"))
    warning = first.page.locator(".flash.warning", has_text="arrived since you opened")
    expect(warning).to_contain_text("1 new message(s) arrived since you opened this ticket")
    expect(first.page.locator(".message.outbound", has_text="(second)")).to_be_visible()
    expect(first.page.get_by_label("Reply", exact=True)).to_have_value(
        "Restored it for you. (first)"
    )
    expect(first.page.get_by_label("Internal note")).to_have_value("")
    first.screenshot("06-collision-reply-held")
    assert [m.author_id for m in agent_replies(session, ticket)] == [second_id]

    first.page.get_by_label("Send anyway").check()
    first.click_and_load(first.page.get_by_role("button", name="Send reply"))
    expect(first.page.locator(".flash.info")).to_have_text("Reply queued for delivery.")
    assert [m.author_id for m in agent_replies(session, ticket)] == [second_id, first_id]

    # If the poll saw the newer message first, the page asks before sending.
    second.open(path)  # the second agent reads the first agent's reply, then answers
    second.page.get_by_label("Reply", exact=True).fill("One more thing. (second)")
    second.click_and_load(second.page.get_by_role("button", name="Send reply"))
    expect(second.page.locator(".flash.info")).to_have_text("Reply queued for delivery.")
    first.page.clock.run_for(POLL_MS + 500)
    expect(first.page.locator("#newer")).to_contain_text("1 new message(s) since you opened")
    first.page.get_by_label("Reply", exact=True).fill("Noted. (first)")
    first.accept_dialogs = True
    first.click_and_load(first.page.get_by_role("button", name="Send reply"))
    expect(first.page.locator(".flash.info")).to_have_text("Reply queued for delivery.")
    assert first.guard.dialogs == [
        "confirm: New messages arrived since you opened this ticket. Send your reply anyway?"
        f" on {first.url(path)}"
    ]
    assert len(agent_replies(session, ticket)) == 4

    first.guard.dialogs.clear()
    for agent in (first, second):
        assert agent.guard.problems() == {}, agent.name
        assert agent.guard.remote_requests == []
    assert re.search(r"/tickets/\d+$", first.page.url)
