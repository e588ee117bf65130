"""Bugs the browser tests found, pinned by fast tests that need no browser:
the sanitiser kept ``data:`` links, an attachment with a non-ASCII filename
made the server fail (a header is Latin-1), a reply held back by the collision
check came back copied into the internal-note box too, and multi-word search
fails on PostgreSQL.
"""

from __future__ import annotations

import re

import pytest

from helpdesk.mail.display import sanitise_html
from tests.test_web_smoke import csrf, sign_in


@pytest.mark.parametrize(
    "href",
    [
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        " DATA:text/html,<script>alert(1)</script>",
        "da&#x09;ta:text/html,x",
        "&#x01;data:text/html,x",
    ],
)
def test_data_links_are_dropped(href):
    html = sanitise_html(f'<a href="{href}">open</a>', cid_url=lambda _: None).html
    assert "href" not in html and "open" in html


def test_ordinary_links_and_data_images_stay():
    html = sanitise_html(
        '<a href="https://example.org/data:x">a</a><img src="data:image/png;base64,AAAA">',
        cid_url=lambda _: None,
    ).html
    assert 'href="https://example.org/data:x"' in html
    assert 'src="data:image/png;base64,AAAA"' in html


def test_attachment_with_non_ascii_filename_is_served(gateway, client, make_user):
    name = "\uff1cGr\u00fc\u00dfe\uff1e \u62a5\u544a.png"  # fullwidth <>, German, Chinese
    filename = "filename*=utf-8''%EF%BC%9CGr%C3%BC%C3%9Fe%EF%BC%9E%20%E6%8A%A5%E5%91%8A.png"
    mail = (
        "From: Bob <bob@customer.example>\r\nTo: help-desk@example.com\r\n"
        "Subject: Report\r\nMessage-ID: <names-1@customer.example>\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        f"--b\r\nContent-Type: image/png\r\nContent-Disposition: attachment; {filename}\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--b--\r\n"
    )
    gateway.send(mail.encode("ascii"))
    make_user("agent@example.com", "agent", ["help-desk"])
    sign_in(client, "agent@example.com")
    assert name.encode() in client.get("/tickets/1").data
    for query, kind in (("?download=1", "attachment"), ("", "inline")):
        response = client.get(f"/tickets/1/attachments/1{query}")
        assert response.status_code == 200
        disposition = response.headers["Content-Disposition"]
        disposition.encode("latin-1")  # what a WSGI server can send
        assert disposition.startswith(kind + ";")
        assert "filename*=UTF-8''%EF%BC%9CGr%C3%BC%C3%9Fe%EF%BC%9E%20%E6%8A%A5%E5%91%8A.png" in (
            disposition
        )


def test_search_with_several_words(gateway, client, make_user):
    """Regression: on PostgreSQL tsqueries were joined with & (no such operator): a 500."""
    gateway.send(
        b"From: bob@customer.example\r\nTo: help-desk@example.com\r\n"
        b"Subject: Printer on fire\r\nMessage-ID: <words-1@customer.example>\r\n\r\n"
        b"The printer is smoking.\r\n"
    )
    make_user("agent@example.com", "agent", ["help-desk"])
    sign_in(client, "agent@example.com")
    page = client.get("/search?q=printer+smoking&status=any")
    assert page.status_code == 200
    assert b"Printer on fire" in page.data


def test_held_back_reply_is_not_copied_into_the_note_box(gateway, client, make_user):
    gateway.send(
        b"From: bob@customer.example\r\nTo: help-desk@example.com\r\n"
        b"Subject: Held\r\nMessage-ID: <held-1@customer.example>\r\n\r\nHello\r\n"
    )
    make_user("agent@example.com", "agent", ["help-desk"])
    sign_in(client, "agent@example.com")
    token = csrf(client.get("/tickets/1").data)
    held = client.post(
        "/tickets/1/reply", data={"body": "Draft answer", "seen": "0", "csrf_token": token}
    )
    assert held.status_code == 409
    page = held.get_data(as_text=True)
    reply = re.search(r'<textarea[^>]*aria-label="Reply"[^>]*>([^<]*)</textarea>', page)
    note = re.search(r'<textarea[^>]*aria-label="Internal note"[^>]*>([^<]*)</textarea>', page)
    assert reply and note, page[:3000]
    assert reply.group(1).strip() == "Draft answer"
    assert note.group(1).strip() == ""
