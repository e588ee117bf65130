"""Idempotency-Key on every POST: the same key and body within 24 hours answers the
first response and changes nothing again, also when both arrive at once; the same
key with another body is a 422."""

from __future__ import annotations

import json
import threading
import urllib.request
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from helpdesk.api import idempotency
from helpdesk.clock import utcnow
from helpdesk.models import IdempotentRequest, Message, Ticket
from tests.api_support import bearer, make_token
from tests.conftest import free_port

NEW = {
    "queue": "help-desk",
    "requester": {"email": "alice@customer.example"},
    "subject": "Printer on fire",
    "text": "Please help.",
}


@pytest.fixture
def token(make_user, engine) -> str:  # type: ignore[no-untyped-def]
    make_user("anna@example.com", "agent", ["help-desk"])
    return make_token(engine, "anna@example.com")


def _count(session, model) -> int:  # type: ignore[no-untyped-def]
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model))


def test_the_same_post_again_answers_the_first_response(client, token, session) -> None:
    headers = {**bearer(token), "Idempotency-Key": "create-1"}
    first = client.post("/api/v1/tickets", json=NEW, headers=headers)
    assert first.status_code == 201
    again = client.post("/api/v1/tickets", json=dict(reversed(NEW.items())), headers=headers)
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert again.headers["Location"] == first.headers["Location"]
    assert _count(session, Ticket) == 1

    other = client.post("/api/v1/tickets", json={**NEW, "subject": "Other"}, headers=headers)
    assert other.status_code == 422
    assert other.get_json()["type"] == "/api/docs#problem-idempotency-mismatch"
    assert _count(session, Ticket) == 1

    # Keys belong to the token that used them; without a key every POST counts.
    assert client.post("/api/v1/tickets", json=NEW, headers=bearer(token)).status_code == 201
    assert _count(session, Ticket) == 2


def test_every_post_takes_a_key(client, token, session) -> None:
    number = client.post("/api/v1/tickets", json=NEW, headers=bearer(token)).get_json()["number"]
    for path, body in (
        (f"/api/v1/tickets/{number}/notes", {"text": "Once."}),
        (f"/api/v1/tickets/{number}/replies", {"text": "Once."}),
    ):
        headers = {**bearer(token), "Idempotency-Key": path}
        first = client.post(path, json=body, headers=headers)
        second = client.post(path, json=body, headers=headers)
        assert first.status_code == second.status_code == 201
        assert first.get_json() == second.get_json()
    assert _count(session, Message) == 4  # the mail, its acknowledgement, one note, one reply
    bad = client.post(
        f"/api/v1/tickets/{number}/notes",
        json={"text": "x"},
        headers={**bearer(token), "Idempotency-Key": "with space"},
    )
    assert bad.status_code == 422 and bad.get_json()["errors"][0]["location"] == "header"


def test_a_failed_request_does_not_use_up_its_key(client, token, session) -> None:
    headers = {**bearer(token), "Idempotency-Key": "retry-me"}
    refused = client.post("/api/v1/tickets", json={**NEW, "queue": "tech-support"}, headers=headers)
    assert refused.status_code == 422
    assert _count(session, IdempotentRequest) == 0
    assert client.post("/api/v1/tickets", json=NEW, headers=headers).status_code == 201


def test_keys_expire_after_a_day(sessions, token, client, session) -> None:
    headers = {**bearer(token), "Idempotency-Key": "old"}
    assert client.post("/api/v1/tickets", json=NEW, headers=headers).status_code == 201
    later = utcnow() + timedelta(hours=25)
    with sessions() as write, write.begin():
        assert idempotency.prune(write, now=later) == 1
    assert client.post("/api/v1/tickets", json=NEW, headers=headers).status_code == 201
    assert _count(session, Ticket) == 2


def test_two_requests_at_once_with_the_same_key_make_one_ticket(app, token, session) -> None:
    """Two real HTTP requests, released together: on PostgreSQL the second waits on the
    key's unique index until the first commits; on SQLite writers take turns."""
    from waitress.server import create_server

    port = free_port()
    server = create_server(app, host="127.0.0.1", port=port, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    barrier = threading.Barrier(2)
    answers: list[tuple[int, dict, str]] = []

    def post() -> None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/tickets",
            data=json.dumps(NEW).encode(),
            headers={**bearer(token), "Idempotency-Key": "together",
                     "Content-Type": "application/json"},
            method="POST",
        )  # fmt: skip
        barrier.wait(timeout=30)
        with urllib.request.urlopen(request, timeout=60) as response:
            replayed = response.headers.get("Idempotent-Replayed", "")
            answers.append((response.status, json.loads(response.read()), replayed))

    try:
        workers = [threading.Thread(target=post) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(90)
    finally:
        server.close()
        thread.join(10)
    assert len(answers) == 2
    assert [a[0] for a in answers] == [201, 201]
    assert answers[0][1] == answers[1][1]
    assert sorted(a[2] for a in answers) == ["", "true"]
    assert _count(session, Ticket) == 1
