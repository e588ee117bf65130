"""The write API: open, reply (JSON and multipart), note, change, merge, download, queues
and users; each change through the lifecycle with the token as actor, in the history,
with the web app's rights. (Responses are checked against the document by ``app``.)"""

from __future__ import annotations

import io

import pytest
from sqlalchemy import select

from helpdesk.models import Attachment, Message, OutboxMail, Ticket, TicketEvent, TicketSla
from tests.api_support import bearer, make_token

PROBLEM = "application/problem+json"


@pytest.fixture
def desk(make_user, engine):  # type: ignore[no-untyped-def]
    """anna works in help-desk (a read and a write token), tom in tech-support, an admin."""
    read = make_user("anna@example.com", "agent", ["help-desk"])
    make_user("tom@example.com", "agent", ["tech-support"])
    make_user("admin@example.com", "admin")
    return {
        "read": read,
        "write": make_token(engine, "anna@example.com", name="ci-bot"),
        "tom": make_token(engine, "tom@example.com"),
        "admin": make_token(engine, "admin@example.com"),
    }


NEW = {
    "queue": "help-desk",
    "requester": {"email": "Alice@Customer.example", "name": "Alice"},
    "subject": "Printer on fire",
    "text": "Please help.",
    "cc": ["bob@customer.example"],
    "priority": "high",
    "tags": ["Printer", "fire"],
}


def _history(session, number: int) -> list[tuple[str, str, str, str]]:  # type: ignore[no-untyped-def]
    session.expire_all()
    ticket = session.scalars(select(Ticket).where(Ticket.number == number)).one()
    rows = session.scalars(
        select(TicketEvent).where(TicketEvent.ticket_id == ticket.id).order_by(TicketEvent.id)
    )
    return [(r.kind, r.actor_kind, r.actor_label, r.new_value) for r in rows]


def test_open_a_ticket_as_mail_would(client, desk, session) -> None:
    created = client.post("/api/v1/tickets", json=NEW, headers=bearer(desk["write"]))
    assert created.status_code == 201, created.get_json()
    ticket = created.get_json()
    number = ticket["number"]
    assert created.headers["Location"] == f"http://localhost/api/v1/tickets/{number}"
    assert ticket["requester"] == "alice@customer.example"
    assert ticket["ccs"] == ["bob@customer.example"]
    assert (ticket["priority"], ticket["tags"]) == ("high", ["fire", "printer"])
    assert (
        ticket["messages"][0]["kind"] == "inbound"
        and ticket["messages"][0]["text"] == "Please help."
    )
    history = _history(session, number)
    assert ("created", "api_token", "ci-bot", "api") in history
    assert {kind for kind, *_ in history} >= {"created", "priority", "tags"}
    row = session.scalars(select(Ticket).where(Ticket.number == number)).one()
    acks = session.scalars(
        select(OutboxMail).where(
            OutboxMail.ticket_id == row.id, OutboxMail.purpose == "acknowledgement"
        )
    ).all()
    assert [a.rcpt_tos for a in acks] == [["alice@customer.example"]]
    assert session.scalars(select(TicketSla).where(TicketSla.ticket_id == row.id)).one()

    quiet = client.post(
        "/api/v1/tickets", json={**NEW, "acknowledge": False}, headers=bearer(desk["write"])
    )
    quiet_id = session.scalars(
        select(Ticket.id).where(Ticket.number == quiet.get_json()["number"])
    ).one()
    assert not session.scalars(
        select(OutboxMail).where(
            OutboxMail.ticket_id == quiet_id, OutboxMail.purpose == "acknowledgement"
        )
    ).all()


def test_writes_need_a_write_token_and_the_users_rights(client, desk, session) -> None:
    read = client.post("/api/v1/tickets", json=NEW, headers=bearer(desk["read"]))
    assert read.status_code == 403 and read.mimetype == PROBLEM
    elsewhere = client.post(
        "/api/v1/tickets", json={**NEW, "queue": "tech-support"}, headers=bearer(desk["write"])
    )
    assert elsewhere.status_code == 422
    assert elsewhere.get_json()["errors"][0]["field"] == "queue"
    number = client.post("/api/v1/tickets", json=NEW, headers=bearer(desk["write"])).get_json()[
        "number"
    ]
    # tom (tech-support) cannot see it, so cannot touch it: 404 everywhere.
    for method, path, body in (
        ("PATCH", f"/api/v1/tickets/{number}", {"status": "open"}),
        ("POST", f"/api/v1/tickets/{number}/replies", {"text": "hi"}),
        ("POST", f"/api/v1/tickets/{number}/notes", {"text": "hi"}),
        ("POST", f"/api/v1/tickets/{number}/merge", {"into": number}),
    ):
        got = client.open(path, method=method, json=body, headers=bearer(desk["tom"]))
        assert got.status_code == 404, (method, path)
    assert session.scalars(select(Ticket.status).where(Ticket.number == number)).one() == "new"


def test_bad_bodies_are_problems_naming_fields(client, desk) -> None:
    write = bearer(desk["write"])
    not_json = client.post(
        "/api/v1/tickets", data="{", headers={**write, "Content-Type": "application/json"}
    )
    assert not_json.status_code == 400 and not_json.mimetype == PROBLEM
    form = client.post("/api/v1/tickets", data={"queue": "help-desk"}, headers=write)
    assert form.status_code == 415
    missing = client.post(
        "/api/v1/tickets",
        json={"queue": "help-desk", "requester": {"email": "nope"}},
        headers=write,
    )
    assert missing.status_code == 422
    errors = {e["field"]: e for e in missing.get_json()["errors"]}
    assert {"requester.email", "subject", "text"} <= set(errors)
    assert errors["requester.email"]["pointer"] == "#/requester/email"
    nul = client.post("/api/v1/tickets", json={**NEW, "subject": "a\x00b"}, headers=write)
    assert nul.status_code == 422 and nul.get_json()["errors"][0]["field"] == "subject"
    extra = client.post("/api/v1/tickets", json={**NEW, "status": "closed"}, headers=write)
    assert extra.status_code == 422


def test_reply_json_threads_and_leaves_through_the_outbox(client, desk, session) -> None:
    write = bearer(desk["write"])
    number = client.post("/api/v1/tickets", json=NEW, headers=write).get_json()["number"]
    reply = client.post(
        f"/api/v1/tickets/{number}/replies",
        json={
            "text": "On our way.",
            "html": "<p>On our <b>way</b><script>x()</script></p>",
            "cc": ["carol@customer.example"],
            "status_after": "pending",
        },
        headers=write,
    )
    assert reply.status_code == 201, reply.get_json()
    message = reply.get_json()
    assert message["kind"] == "outbound" and message["delivery"]["state"] == "queued"
    assert set(message["to"] + message["cc"]) == {
        "alice@customer.example",
        "bob@customer.example",
        "carol@customer.example",
    }
    shown = client.get(f"/api/v1/tickets/{number}", headers=write).get_json()
    assert shown["status"] == "pending" and "carol@customer.example" in shown["ccs"]
    row = session.scalars(select(Message).where(Message.id == message["id"])).one()
    inbound = session.scalars(
        select(Message).where(Message.ticket_id == row.ticket_id, Message.kind == "inbound")
    ).first()
    assert row.in_reply_to == inbound.message_id  # threaded under the customer's message
    assert "<b>way</b>" in row.html_body and "script" not in row.html_body
    history = _history(session, number)
    assert ("reply", "api_token", "ci-bot", "") in history
    assert ("cc", "api_token", "ci-bot", "carol@customer.example") in history


def test_reply_multipart_with_files_and_download(client, desk, session) -> None:
    write = bearer(desk["write"])
    number = client.post("/api/v1/tickets", json=NEW, headers=write).get_json()["number"]
    reply = client.post(
        f"/api/v1/tickets/{number}/replies",
        data={"text": "The log you asked for.", "cc": ["dave@customer.example"],
              "files": [(io.BytesIO(b"line 1\n"), "log.txt", "text/plain"),
                        (io.BytesIO(b"\x89PNG..."), "../../etc/shot.png", "image/png")]},
        headers=write, content_type="multipart/form-data",
    )  # fmt: skip
    assert reply.status_code == 201, reply.get_json()
    files = reply.get_json()["attachments"]
    assert [f["filename"] for f in files] == ["log.txt", "shot.png"]
    got = client.get(files[1]["url"].replace("http://localhost", ""), headers=write)
    assert got.status_code == 200 and got.data == b"\x89PNG..."
    assert got.headers["Content-Disposition"] == "attachment; filename=shot.png"
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in got.headers["Content-Security-Policy"]
    assert (
        session.scalars(select(Attachment).where(Attachment.id == files[0]["id"])).one().size == 7
    )


def test_note_patch_and_merge(client, desk, session) -> None:
    write = bearer(desk["write"])
    first = client.post("/api/v1/tickets", json=NEW, headers=write).get_json()["number"]
    second = client.post("/api/v1/tickets", json=NEW, headers=write).get_json()["number"]
    note = client.post(f"/api/v1/tickets/{first}/notes", json={"text": "VIP"}, headers=write)
    assert note.status_code == 201 and note.get_json()["kind"] == "note"

    patched = client.patch(
        f"/api/v1/tickets/{first}",
        json={
            "status": "open",
            "priority": "urgent",
            "assignee": "anna@example.com",
            "tags": ["vip"],
        },
        headers=write,
    )
    assert patched.status_code == 200, patched.get_json()
    body = patched.get_json()
    assert (body["status"], body["priority"], body["assignee"], body["tags"]) == (
        "open",
        "urgent",
        "anna@example.com",
        ["vip"],
    )
    unassigned = client.patch(f"/api/v1/tickets/{first}", json={"assignee": None}, headers=write)
    assert unassigned.get_json()["assignee"] is None
    for bad, field in (
        ({"assignee": "nobody@example.com"}, "assignee"),
        ({"assignee": "tom@example.com"}, None),  # cannot work in help-desk
        ({"status": None}, "status"),
        ({"queue": "tech-support"}, "queue"),  # not anna's
        ({"status": "bogus"}, "status"),
    ):
        got = client.patch(f"/api/v1/tickets/{first}", json=bad, headers=write)
        assert got.status_code == 422, bad
        if field:
            assert got.get_json()["errors"][0]["field"] == field, bad
    assert session.scalars(select(Ticket.priority).where(Ticket.number == first)).one() == "urgent"

    merged = client.post(f"/api/v1/tickets/{second}/merge", json={"into": first}, headers=write)
    assert merged.status_code == 200
    assert merged.get_json()["number"] == first
    kinds = [m["kind"] for m in merged.get_json()["messages"]]
    assert (kinds.count("inbound"), kinds.count("note")) == (2, 1)  # both mails, the note
    source = client.get(f"/api/v1/tickets/{second}", headers=write).get_json()
    assert (source["status"], source["merged_into"]) == ("closed", first)
    again = client.post(f"/api/v1/tickets/{second}/merge", json={"into": first}, headers=write)
    assert again.status_code == 422
    assert ("merge", "api_token", "ci-bot", f"#{first}") in _history(session, second)


def test_queues_and_users(client, desk) -> None:
    queues = client.get("/api/v1/queues", headers=bearer(desk["read"])).get_json()["queues"]
    assert [q["slug"] for q in queues] == ["help-desk"]
    everyone = client.get("/api/v1/queues", headers=bearer(desk["admin"])).get_json()["queues"]
    assert len(everyone) == 3
    assert client.get("/api/v1/users", headers=bearer(desk["read"])).status_code == 404
    listed = client.get("/api/v1/users", headers=bearer(desk["admin"])).get_json()["users"]
    anna = next(u for u in listed if u["email"] == "anna@example.com")
    assert anna == {"email": "anna@example.com", "name": "", "role": "agent", "active": True,
                    "queues": ["help-desk"]}  # fmt: skip
