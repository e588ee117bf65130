"""Helpers for API tests: every API response checked against the OpenAPI document.

``check_conformance(app)`` makes the app check each response of a declared
operation (openapi-core, against the document the app itself serves) and
keep what does not conform; the ``app`` fixture asserts at teardown that
nothing was kept, so every test that calls the API through ``app`` proves its
responses match the document.
"""

from __future__ import annotations

import json
from functools import cache

from flask import Flask, request
from openapi_core import Config, OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse

PROBLEM_JSON = "application/problem+json"


@cache
def document() -> dict:
    """The document, as the app serves it (the same for every app)."""
    from helpdesk.api import operations

    return operations().openapi(title="helpdesk API", version="1", server_url="/api/v1")


@cache
def spec() -> OpenAPI:
    config = Config(extra_media_type_deserializers={PROBLEM_JSON: json.loads})
    return OpenAPI.from_dict(document(), config=config)


def nonconforming(flask_request, response) -> str | None:  # type: ignore[no-untyped-def]
    """Why the response does not match the document, or None."""
    try:
        spec().validate_response(
            WerkzeugOpenAPIRequest(flask_request), WerkzeugOpenAPIResponse(response)
        )
    except Exception as exc:
        return f"{flask_request.method} {flask_request.full_path} -> {response.status_code}: {exc}"
    return None


def check_conformance(app: Flask) -> list[str]:
    """Check every response of a declared operation; returns the list of failures."""
    failures: list[str] = []

    @app.after_request
    def _check(response):  # type: ignore[no-untyped-def]
        endpoint = request.endpoint or ""
        if endpoint.startswith("api.") and endpoint != "api.openapi":
            response.direct_passthrough = False
            problem = nonconforming(request, response)
            if problem:
                failures.append(problem)
        return response

    return failures


def open_tickets(  # type: ignore[no-untyped-def]
    sessions, count: int, *, queue: str = "help-desk", subject: str = "Ticket"
) -> list[int]:
    """``count`` tickets opened as mail from customers would open them; their numbers."""
    from helpdesk.clock import utcnow
    from helpdesk.tickets import contacts, conversation, queues
    from helpdesk.tickets.actors import Actor
    from helpdesk.tickets.conversation import NewMessage, Opening

    numbers = []
    with sessions() as session, session.begin():
        target = queues.by_slug(session, queue)
        for i in range(count):
            now = utcnow()
            address = f"customer{i}@customer.example"
            requester = contacts.get_or_create(session, address, f"Customer {i}", now=now)
            ticket = conversation.open_ticket(
                session, queue=target, requester=requester, subject=f"{subject} {i}",
                actor=Actor.customer(requester), now=now,
                opening=Opening(message=NewMessage(from_address=address, text=f"Body {i}"),
                                acknowledge=False),
            )  # fmt: skip
            session.flush()
            numbers.append(ticket.number)
    return numbers


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_token(engine, email: str, *, scope: str = "write", name: str = "") -> str:  # type: ignore[no-untyped-def]
    """Another token for an existing user."""
    from helpdesk import db
    from helpdesk.accounts import users
    from helpdesk.clock import utcnow

    with db.session_factory(engine, write=True)() as session, session.begin():
        user = users.by_email(session, email)
        return users.create_token(session, user, now=utcnow(), scope=scope, name=name)
