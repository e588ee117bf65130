"""The web app end to end through Flask's test client: sign in, find a ticket that
arrived by mail, read it, reply, note, triage, search, and bulk-close."""

from __future__ import annotations

import re

from sqlalchemy import select

from helpdesk.models import Message, OutboxMail, Ticket, TicketEvent
from tests.conftest import outbox_bytes

MAIL = (
    b"From: Bob Customer <bob@customer.example>\r\n"
    b"To: help-desk@example.com\r\n"
    b"Subject: VPN keeps dropping\r\n"
    b"Message-ID: <vpn-1@customer.example>\r\n"
    b"Content-Type: multipart/mixed; boundary=XX\r\n"
    b"\r\n--XX\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b"<p>Every <b>hour</b> the tunnel drops.<script>alert(1)</script>"
    b'<img src="https://tracker.example/pixel.gif"></p>\r\n'
    b"--XX\r\nContent-Type: text/plain; name=log.txt\r\n"
    b"Content-Disposition: attachment; filename=log.txt\r\n\r\nline1\r\n--XX--\r\n"
)


def csrf(page: bytes) -> str:
    match = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', page) or re.search(
        rb'name="csrf_token" value="([^"]+)"', page
    )
    assert match, "no CSRF token on the page"
    return match.group(1).decode()


def sign_in(client, email: str, password: str = "password123"):  # type: ignore[no-untyped-def]
    page = client.get("/login").data
    return client.post(
        "/login", data={"email": email, "password": password, "csrf_token": csrf(page)}
    )


def test_agent_works_a_ticket(gateway, client, make_user, session):
    gateway.send(MAIL, mail_from="bob@customer.example")
    make_user("agent@example.com", "agent", ["help-desk"])
    assert sign_in(client, "agent@example.com").status_code == 302

    listing = client.get("/queues/help-desk")
    assert b"VPN keeps dropping" in listing.data
    assert "script-src 'self'" in listing.headers["Content-Security-Policy"]

    page = client.get("/tickets/1")
    assert page.status_code == 200
    assert b"Every hour the tunnel drops." in page.data  # the text version
    assert b"<script>alert(1)</script>" not in page.data
    html = client.get("/tickets/1?html=1")
    assert b"<b>hour</b>" in html.data and b"<script>" not in html.data
    assert b"tracker.example" not in html.data  # remote image blocked
    assert b"remote image(s) blocked" in html.data
    token = csrf(page.data)

    attachment = client.get("/tickets/1/attachments/1?download=1")
    assert attachment.headers["Content-Disposition"].startswith("attachment")
    assert attachment.headers["X-Content-Type-Options"] == "nosniff"

    last = session.scalar(select(Message.id).order_by(Message.id.desc()).limit(1))
    sent = client.post(
        "/tickets/1/reply",
        data={"body": "Please update the client.", "csrf_token": token, "seen": last},
    )
    assert sent.status_code == 302
    assert sent.headers["Location"].endswith("/tickets/1"), sent.data[:2000]
    client.post("/tickets/1/note", data={"body": "Known issue #42", "csrf_token": token})
    client.post(
        "/tickets/1/properties", data={"status": "pending", "priority": "high", "csrf_token": token}
    )
    client.post("/tickets/1/assignee", data={"value": "agent@example.com", "csrf_token": token})
    client.post("/tickets/1/tags", data={"value": "vpn, network", "csrf_token": token})

    session.expire_all()
    ticket = session.scalars(select(Ticket)).one()
    assert (ticket.status, ticket.priority) == ("pending", "high")
    assert ticket.assignee.email == "agent@example.com"
    assert [t.name for t in ticket.tags] == ["network", "vpn"]
    kinds = [m.kind for m in ticket.messages]
    assert kinds == ["inbound", "outbound", "outbound", "note"]
    reply = session.scalars(select(OutboxMail).where(OutboxMail.purpose == "reply")).one()
    assert b"Please update the client." in outbox_bytes(reply)
    events = {e.kind for e in session.scalars(select(TicketEvent))}
    assert {"status", "priority", "assignee", "tags", "reply"} <= events

    found = client.get("/search?q=tunnel&status=any")
    assert b"VPN keeps dropping" in found.data
    assert b"VPN keeps dropping" not in client.get("/search?q=printer&status=any").data

    bulk = client.post(
        "/tickets/bulk", data={"ticket": ["1"], "action": "close", "value": "", "csrf_token": token}
    )
    assert bulk.status_code == 302
    session.expire_all()
    assert session.scalars(select(Ticket.status)).one() == "closed"


def test_post_without_csrf_token_is_refused(gateway, client, make_user, session):
    gateway.send(MAIL)
    make_user("agent@example.com", "agent", ["help-desk"])
    sign_in(client, "agent@example.com")
    response = client.post("/tickets/1/note", data={"body": "sneaky"})
    assert response.status_code == 400
    assert session.scalars(select(Message).where(Message.kind == "note")).first() is None


def test_wrong_password_and_throttling(client, make_user):
    make_user("agent@example.com", "agent", ["help-desk"])
    codes = [sign_in(client, "agent@example.com", "wrong-password").status_code for _ in range(6)]
    assert codes[:5] == [401] * 5 and codes[5] == 429
    # Throttled even with the right password until the window passes.
    assert sign_in(client, "agent@example.com").status_code == 429


def test_sign_out_ends_the_session_everywhere(client, app, make_user):
    make_user("agent@example.com", "agent", ["help-desk"])
    sign_in(client, "agent@example.com")
    with client.session_transaction() as stolen:
        cookie = dict(stolen)
    page = client.get("/views/mine")
    assert page.status_code == 200
    client.post("/logout", data={"csrf_token": csrf(page.data)})
    other = app.test_client()
    with other.session_transaction() as sess:
        sess.update(cookie)
    assert other.get("/views/mine").status_code == 302  # to /login
