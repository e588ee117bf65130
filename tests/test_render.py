"""Issue 10 row 3: a page costs what the mail is worth, linearly (SQLite and PostgreSQL).

The hostile mail (tests/hostile_mail.py: 10,000 quoted lines, a long line,
30,000 unclosed ``<div>``) arrives over real SMTP; its HTML is sanitised once
when stored, nesting cut (``Message.html_safe``); the ticket page shows at
most ``HELPDESK_MAX_DISPLAY_BODY`` of text and HTML, with the original to
download beyond; a message stored before (no ``html_safe``) is still shown
sanitised. In a real browser the hostile ticket renders, capped. Timing is
``bench/render.py``'s, not a test's.
"""

from __future__ import annotations

import html as html_lib
import re
from dataclasses import replace

from sqlalchemy import select, update

from helpdesk import db
from helpdesk.mail.display import MAX_HTML_DEPTH, cap_nesting, fold_quotes, sanitise_html
from helpdesk.models import Message, RawMail
from tests.hostile_mail import hostile_mail
from tests.test_sla_escalation import sign_in

pytest_plugins = ["tests.browser_support"]


def test_nesting_is_cut_at_the_cap_and_content_kept():
    html = "<div>" * 5000 + "deep" + "</div>" * 5000 + "<p>after</p>"
    capped = cap_nesting(html, 10)
    assert capped.count("<div>") == 10 and capped.count("</div>") == 10
    assert "deep" in capped and capped.endswith("<p>after</p>")
    # Void elements and self-closed tags do not nest.
    assert cap_nesting("<br>" * 50 + "<img src=x/>" * 50, 3).count("<br>") == 50
    cleaned = sanitise_html("<div>" * 30_000 + "x", cid_url=lambda cid: None).html
    assert cleaned.count("<div>") == MAX_HTML_DEPTH and "x" in cleaned


def test_stored_html_is_presented_in_one_pass_without_being_fooled():
    html = '<img alt="x src=" src="http://e.example/t.png"><img src="cid:logo" alt="a>b">'
    shown = sanitise_html(html, cid_url=lambda cid: f"/a/{cid}?x=1&y=2")
    assert "e.example" not in shown.html and shown.blocked_images == 1
    assert '<img src="/a/logo?x=1&amp;y=2" alt="a&gt;b">' in shown.html
    allowed = sanitise_html(html, cid_url=lambda cid: None, show_remote_images=True)
    assert 'src="http://e.example/t.png"' in allowed.html and allowed.blocked_images == 0


def test_quote_folding_is_one_pass_and_finds_the_trailing_quote():
    text = "New\n> a\nmiddle\n" + "> q\n" * 10_000 + "\n"
    folded = fold_quotes(text)
    assert folded.new == "New\n> a\nmiddle"
    assert folded.quoted.count("> q") == 10_000
    assert fold_quotes("> only a quote").new == "> only a quote"
    assert fold_quotes("Hi\nOn Mon, 1 Jan 2026, Bob wrote:\n> x").quoted.startswith("On Mon")


def test_hostile_ticket_is_sanitised_once_and_capped(gateway, settings, engine, session, make_user):
    from helpdesk.web import create_app

    raw = hostile_mail(4)
    gateway.send(raw, mail_from="mallory@attacker.example")
    message = session.scalars(select(Message).where(Message.kind == "inbound")).one()
    assert message.html_safe is not None
    assert message.html_safe.count("<div>") == MAX_HTML_DEPTH
    assert message.html_body.count("<div>") == 30_000  # what was sent is kept as sent

    make_user("agent@example.com", "agent", ["help-desk"])
    client = create_app(replace(settings, max_display_body=16 * 1024), engine).test_client()
    sign_in(client, "agent@example.com")
    page = client.get("/tickets/1").get_data(as_text=True)
    shown = re.search(r'<pre class="body">(.*?)</pre>', page, re.S)
    quoted = re.search(r"<summary>Quoted text</summary><pre>(.*?)</pre>", page, re.S)
    assert shown is not None and quoted is not None
    assert shown.group(1).startswith("New text first.")
    visible = html_lib.unescape(shown.group(1) + "\n" + quoted.group(1))
    assert len(visible) <= 16 * 1024
    assert "and a last plain line." not in page  # beyond the cap
    assert "Download the original" in page
    link = re.search(r'href="(/tickets/1/messages/\d+/original)"', page)
    assert link is not None
    original = client.get(link.group(1))
    assert original.status_code == 200
    assert original.data == raw
    assert original.headers["Content-Disposition"].startswith("attachment")
    # Under the cap nothing is cut, and no link is offered.
    whole = create_app(settings, engine).test_client()
    sign_in(whole, "agent@example.com")
    page = whole.get("/tickets/1").get_data(as_text=True)
    assert "and a last plain line." in page and "Download the original" not in page


def test_a_message_stored_before_is_sanitised_on_the_fly(gateway, engine, client, make_user):
    raw = (
        b"From: Old <old@customer.example>\r\nTo: help-desk@example.com\r\nSubject: Old\r\n"
        b"Message-ID: <old@customer.example>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        b'<p>kept</p><script>window.__xss=1</script><img src="http://tracker.example/p.gif">\r\n'
    )
    gateway.send(raw, mail_from="old@customer.example")
    with db.session_factory(engine, write=True)() as write, write.begin():
        write.execute(update(Message).values(html_safe=None))  # as before migration 0009
    make_user("agent@example.com", "agent", ["help-desk"])
    sign_in(client, "agent@example.com")
    page = client.get("/tickets/1?html=1").get_data(as_text=True)
    assert "<p>kept</p>" in page
    assert "__xss" not in page and "tracker.example" not in page
    assert "1 remote image(s) blocked" in page


def test_hostile_ticket_renders_capped_in_a_browser(
    gateway, engine, session, make_user, open_agent
):
    from playwright.sync_api import expect

    gateway.send(hostile_mail(4), mail_from="mallory@attacker.example")
    make_user("agent@example.com", "agent", ["help-desk"])
    agent = open_agent("agent")
    agent.sign_in("agent@example.com")
    agent.open("/tickets/1")
    page = agent.page
    expect(page.locator("pre.body").first).to_contain_text("New text first.")
    agent.open("/tickets/1?html=1")
    expect(page.locator(".body.html").first).to_contain_text("Hello")
    nesting = page.evaluate(
        "() => { let d = 0; const walk = (e, k) => { d = Math.max(d, k);"
        " for (const c of e.children) walk(c, k + 1); };"
        " walk(document.querySelector('.thread'), 0); return d; }"
    )
    assert nesting < MAX_HTML_DEPTH + 20
    assert agent.guard.problems() == {}
    row = session.scalars(select(RawMail)).one()
    assert row.state == "processed"


def test_migration_fills_stored_html_of_existing_messages(settings, engine, session):
    """Messages stored before 0011 get their sanitised HTML when the database is upgraded."""
    from alembic import command

    from helpdesk.mail.display import prepare_html
    from tests.conftest import start_gateway

    running = start_gateway(settings, engine)
    try:
        running.send(hostile_mail(1), mail_from="mallory@attacker.example")
    finally:
        running.stop()
    session.close()
    engine.dispose()
    command.downgrade(db.alembic_config(engine), "0010")
    command.upgrade(db.alembic_config(engine), "head")
    session.expire_all()
    inbound = session.scalars(select(Message).where(Message.kind == "inbound")).one()
    assert inbound.html_safe == prepare_html(inbound.html_body)
    assert inbound.html_safe.count("<div>") == MAX_HTML_DEPTH
    outbound = session.scalars(select(Message).where(Message.kind == "outbound")).one()
    assert outbound.html_safe == prepare_html(outbound.html_body) != ""
