"""CSRF on every state-changing route, and the session cookie: its flags and its
rotation at sign-in.

The routes come from ``app.url_map``: every rule that accepts POST, except the
API (bearer tokens, no cookies), needs a recipe here, or the test fails. Each
route is posted without a token, with a garbage token, with a tampered token and
with a valid token of another session: every one must be a 400 that leaves the
database exactly as it was. Then the same form with the right token must go
through and change the database, which proves the token is what decides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from urllib.parse import unquote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from helpdesk import db
from helpdesk.accounts import signin
from helpdesk.automation import macros
from helpdesk.automation import service as rule_service
from helpdesk.clock import utcnow
from helpdesk.models import ApiToken, RawMail, SlaCalendar, SlaPolicy, Ticket, User, WebSession
from helpdesk.models.base import Base
from helpdesk.tickets import canned
from tests.test_web_rights import mail
from tests.test_web_smoke import csrf, sign_in

AGENT = "agent@example.com"
ADMIN = "admin@example.com"
# Columns that a plain page view may refresh (at most once a minute); not state we guard.
VOLATILE = {"last_seen_at", "last_used_at"}


@dataclass
class Setup:
    app: Flask
    engine: object
    first: int  # a help-desk ticket
    second: int  # another help-desk ticket, merged into the first
    user_ids: dict[str, int]
    canned_id: int
    calendar_id: int
    policy_id: int
    failed_id: int  # a raw mail that could not be applied
    rules: dict[str, int]  # "on" (enabled), "off" (disabled), "doomed"
    macros: dict[str, int]  # "macro", "doomed"

    def token_of(self, email: str) -> int:
        """The id of the newest active API token of the user."""
        with self.engine.connect() as conn:  # type: ignore[attr-defined]
            return conn.scalar(
                select(ApiToken.id)
                .where(ApiToken.user_id == self.user_ids[email], ApiToken.revoked_at.is_(None))
                .order_by(ApiToken.id.desc())
            )

    def failed_again(self) -> None:
        """Mail put back in the spool is failed again (the applier is stopped here)."""
        with self.engine.begin() as conn:  # type: ignore[attr-defined]
            conn.execute(update(RawMail).where(RawMail.state == "spooled").values(state="failed"))


@pytest.fixture
def setup(app, gateway, make_user, engine, session) -> Setup:  # type: ignore[no-untyped-def]
    for subject in ("Printer on fire", "Printer still on fire"):
        sender = f"{subject.split()[-1]}@customer.example"
        raw = mail(sender=sender, queue="help-desk", subject=subject, body="Help!")
        gateway.send(raw, mail_from=sender)
    # No sender anywhere: stored, but it cannot become a ticket (failed).
    gateway.send(b"To: help-desk@example.com\r\nSubject: who?\r\n\r\nNo From.\r\n", mail_from="")
    gateway.stop()  # no applier from here on: reprocessed mail stays in the spool
    make_user(AGENT, "agent", ["help-desk", "tech-support"])
    make_user(ADMIN, "admin")
    make_user("active@example.com", "agent", ["help-desk"])
    make_user("inactive@example.com", "agent", ["help-desk"])
    with db.session_factory(engine, write=True)() as write, write.begin():
        inactive = write.scalars(select(User).where(User.email == "inactive@example.com")).one()
        signin.deactivate(write, inactive)
        response = canned.create(write, title="Hi", body="Hello!", queue=None, now=utcnow())
        write.flush()
        canned_id = response.id
        rules = {
            key: rule_service.save(write, None, {
                "name": f"CSRF {key}", "enabled": key != "off", "trigger": "ticket.created",
                "actions": [{"add_tags": ["csrf"]}]}, now=utcnow()).id
            for key in ("on", "off", "doomed")
        }  # fmt: skip
        macro_ids = {
            key: macros.save(write, None, {"name": f"CSRF {key}",
                             "actions": [{"add_tags": [f"csrf-{key}"]}]}, now=utcnow()).id
            for key in ("macro", "doomed")
        }  # fmt: skip
    session.expire_all()
    numbers = dict(session.execute(select(Ticket.subject, Ticket.number)).all())
    return Setup(
        app=app,
        engine=engine,
        first=numbers["Printer on fire"],
        second=numbers["Printer still on fire"],
        user_ids=dict(session.execute(select(User.email, User.id)).all()),
        canned_id=canned_id,
        calendar_id=session.scalars(select(SlaCalendar.id)).first(),
        policy_id=session.scalars(select(SlaPolicy.id)).first(),
        failed_id=session.scalars(select(RawMail.id).where(RawMail.state == "failed")).one(),
        rules=rules,
        macros=macro_ids,
    )


def snapshot(engine) -> dict[str, list[tuple]]:  # type: ignore[no-untyped-def]
    """Every row of every table, in a stable order."""
    tables = {}
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            columns = [c for c in table.columns if c.name not in VOLATILE]
            rows = conn.execute(select(*columns)).all()
            tables[table.name] = sorted((tuple(row) for row in rows), key=repr)
    return tables


def changed_tables(before: dict, after: dict) -> list[str]:
    return sorted(name for name in before if before[name] != after.get(name))


@dataclass
class Recipe:
    who: str | None  # the signed-in user, or None for an anonymous client
    path: Callable[[Setup], str]
    data: Callable[[Setup], dict]
    status: int = 302  # 200: the answer is a page that shows a secret once (no redirect)
    # False: it may find its work done by another route of the matrix (the same macro on
    # the same ticket); what it does is tested on its own (tests/test_rules_*.py, browser).
    changes: bool = True


WEEK = "\n".join(f"{day} 08:00-16:00" for day in ("mon", "tue", "wed", "thu", "fri"))


def policy_form(s: Setup) -> dict:
    return {
        "name": "Urgent",
        "position": "1",
        "queue": "help-desk",
        "priority": "urgent",
        "calendar": str(s.calendar_id),
        "first_response_minutes": "30",
        "resolution_minutes": "240",
        "warn_percent": "75",
    }


# Keyed by rule, not endpoint: two rules of one view (new and existing) are two routes.
RECIPES: dict[str, Recipe] = {
    "/login": Recipe(
        None, lambda s: "/login", lambda s: {"email": AGENT, "password": "password123"}
    ),
    "/logout": Recipe(AGENT, lambda s: "/logout", lambda s: {}),
    "/tickets/bulk": Recipe(
        AGENT,
        lambda s: "/tickets/bulk",
        lambda s: {"ticket": [str(s.first)], "action": "status", "value": "pending"},
    ),
    "/tickets/<int:number>/reply": Recipe(
        AGENT,
        lambda s: f"/tickets/{s.first}/reply",
        lambda s: {"body": "On its way.", "seen": "0", "confirm": "y"},
    ),
    "/tickets/<int:number>/note": Recipe(
        AGENT, lambda s: f"/tickets/{s.first}/note", lambda s: {"body": "Call the fire brigade."}
    ),
    "/tickets/<int:number>/properties": Recipe(
        AGENT,
        lambda s: f"/tickets/{s.first}/properties",
        lambda s: {"status": "open", "priority": "urgent"},
    ),
    "/tickets/<int:number>/assignee": Recipe(
        AGENT, lambda s: f"/tickets/{s.first}/assignee", lambda s: {"value": AGENT}
    ),
    "/tickets/<int:number>/queue": Recipe(
        AGENT, lambda s: f"/tickets/{s.first}/queue", lambda s: {"value": "tech-support"}
    ),
    "/tickets/<int:number>/tags": Recipe(
        AGENT, lambda s: f"/tickets/{s.first}/tags", lambda s: {"value": "fire, printer"}
    ),
    "/tickets/<int:number>/merge": Recipe(
        AGENT, lambda s: f"/tickets/{s.second}/merge", lambda s: {"value": str(s.first)}
    ),
    "/admin/users": Recipe(
        ADMIN,
        lambda s: "/admin/users",
        lambda s: {"email": "new@example.com", "name": "New", "role": "agent", "password": ""},
    ),
    "/admin/users/<int:user_id>/deactivate": Recipe(
        ADMIN,
        lambda s: f"/admin/users/{s.user_ids['active@example.com']}/deactivate",
        lambda s: {},
    ),
    "/admin/users/<int:user_id>/activate": Recipe(
        ADMIN,
        lambda s: f"/admin/users/{s.user_ids['inactive@example.com']}/activate",
        lambda s: {},
    ),
    "/admin/queues/<slug>": Recipe(
        ADMIN,
        lambda s: "/admin/queues/service-desk",
        lambda s: {
            "name": "Service desk (renamed)",
            "email_address": "service-desk@example.com",
            "extra_addresses": "",
            "closed_reply_policy": "new_ticket",
        },
    ),
    "/admin/canned": Recipe(
        ADMIN,
        lambda s: "/admin/canned",
        lambda s: {"title": "Bye", "body": "Goodbye!", "queue": ""},
    ),
    "/admin/canned/<int:response_id>/delete": Recipe(
        ADMIN, lambda s: f"/admin/canned/{s.canned_id}/delete", lambda s: {}
    ),
    # Unticked boxes: every notification switched off (all start on).
    "/me": Recipe(AGENT, lambda s: "/me", lambda s: {}),
    "/admin/sla/calendars/new": Recipe(
        ADMIN,
        lambda s: "/admin/sla/calendars/new",
        lambda s: {"name": "Night shift", "timezone": "UTC", "weekly": WEEK, "holidays": ""},
    ),
    "/admin/sla/calendars/<int:calendar_id>": Recipe(
        ADMIN,
        lambda s: f"/admin/sla/calendars/{s.calendar_id}",
        lambda s: {"name": "Office", "timezone": "UTC", "weekly": WEEK, "holidays": ""},
    ),
    "/admin/sla/calendars/<int:calendar_id>/import": Recipe(
        ADMIN,
        lambda s: f"/admin/sla/calendars/{s.calendar_id}/import",
        lambda s: {"years": "2026", "country": "DE", "subdivision": ""},
    ),
    "/admin/sla/policies/new": Recipe(ADMIN, lambda s: "/admin/sla/policies/new", policy_form),
    "/admin/sla/policies/<int:policy_id>": Recipe(
        ADMIN, lambda s: f"/admin/sla/policies/{s.policy_id}", policy_form
    ),
    "/admin/mail/reprocess": Recipe(ADMIN, lambda s: "/admin/mail/reprocess", lambda s: {}),
    "/admin/mail/<int:raw_mail_id>/reprocess": Recipe(
        ADMIN,
        lambda s: s.failed_again() or f"/admin/mail/{s.failed_id}/reprocess",
        lambda s: {},
    ),
    "/admin/rules/new": Recipe(
        ADMIN,
        lambda s: "/admin/rules/new",
        lambda s: {
            "do": "save",
            "name": "Fresh rule",
            "trigger": "ticket.created",
            "position": "5",
            "match": "all",
            "also_match": "any",
            "actions-0-kind": "priority",
            "actions-0-value": "high",
        },
    ),
    "/admin/rules/<int:rule_id>": Recipe(
        ADMIN,
        lambda s: f"/admin/rules/{s.rules['on']}",
        lambda s: {
            "do": "save",
            "name": "Renamed rule",
            "enabled": "y",  # still on, for the disable route (the routes run in any order)
            "trigger": "ticket.created",
            "position": "5",
            "match": "all",
            "also_match": "any",
            "actions-0-kind": "priority",
            "actions-0-value": "low",
        },
    ),
    "/admin/rules/<int:rule_id>/enable": Recipe(
        ADMIN, lambda s: f"/admin/rules/{s.rules['off']}/enable", lambda s: {}
    ),
    "/admin/rules/<int:rule_id>/disable": Recipe(
        ADMIN, lambda s: f"/admin/rules/{s.rules['on']}/disable", lambda s: {}
    ),
    "/admin/rules/<int:rule_id>/up": Recipe(
        ADMIN, lambda s: f"/admin/rules/{s.rules['doomed']}/up", lambda s: {}
    ),
    "/admin/rules/<int:rule_id>/down": Recipe(
        ADMIN, lambda s: f"/admin/rules/{s.rules['on']}/down", lambda s: {}
    ),
    "/admin/rules/<int:rule_id>/delete": Recipe(
        ADMIN, lambda s: f"/admin/rules/{s.rules['doomed']}/delete", lambda s: {}
    ),
    "/admin/macros/new": Recipe(
        ADMIN,
        lambda s: "/admin/macros/new",
        lambda s: {
            "name": "Fresh macro",
            "queue": "",
            "position": "1",
            "reply": "",
            "actions-0-kind": "priority",
            "actions-0-value": "high",
        },
    ),
    "/admin/macros/<int:macro_id>": Recipe(
        ADMIN,
        lambda s: f"/admin/macros/{s.macros['macro']}",
        lambda s: {
            "name": "Renamed macro",
            "queue": "",  # still every queue's, for the routes that apply it
            "position": "1",
            "reply": "",
            "actions-0-kind": "priority",
            "actions-0-value": "low",
        },
    ),
    "/admin/macros/<int:macro_id>/delete": Recipe(
        ADMIN, lambda s: f"/admin/macros/{s.macros['doomed']}/delete", lambda s: {}
    ),
    "/tickets/<int:number>/macro": Recipe(
        AGENT, lambda s: f"/tickets/{s.first}/macro", lambda s: {"macro": str(s.macros["macro"])}
    ),
    "/tickets/macro": Recipe(
        AGENT,
        lambda s: "/tickets/macro",
        lambda s: {"ticket": [str(s.first)], "macro": str(s.macros["macro"]), "back": "/"},
        changes=False,
    ),
    "/admin/sla/policies/<int:policy_id>/delete": Recipe(
        ADMIN, lambda s: f"/admin/sla/policies/{s.policy_id}/delete", lambda s: {}
    ),
    "/me/tokens": Recipe(
        AGENT, lambda s: "/me/tokens", lambda s: {"name": "ci", "scope": "write"}, status=200
    ),
    "/me/tokens/<int:token_id>/revoke": Recipe(
        AGENT, lambda s: f"/me/tokens/{s.token_of(AGENT)}/revoke", lambda s: {}
    ),
    "/admin/tokens/<int:token_id>/revoke": Recipe(
        ADMIN, lambda s: f"/admin/tokens/{s.token_of(AGENT)}/revoke", lambda s: {}
    ),
}


def post_rules(app: Flask) -> list[str]:
    """Every rule that accepts POST, except the API's."""
    return [
        rule.rule
        for rule in app.url_map.iter_rules()
        if "POST" in (rule.methods or set()) and not rule.endpoint.startswith("api.")
    ]


def client_for(app: Flask, who: str | None) -> FlaskClient:
    client = app.test_client()
    if who is not None:
        assert sign_in(client, who).status_code == 302, who
    return client


def flashed_errors(client: FlaskClient) -> list[str]:
    with client.session_transaction() as session:
        return [text for category, text in session.pop("_flashes", []) if category == "error"]


def test_every_post_route_requires_the_csrf_token(setup: Setup) -> None:
    app, engine = setup.app, setup.engine
    rules = post_rules(app)
    problems = [f"no CSRF recipe for POST {r}" for r in rules if r not in RECIPES]
    problems += [f"recipe for a route that is gone: {r}" for r in RECIPES if r not in rules]
    assert not problems, "\n".join(problems)

    adapter = app.url_map.bind("localhost")
    for rule in rules:
        recipe = RECIPES[rule]
        client = client_for(app, recipe.who)
        path, form = recipe.path(setup), recipe.data(setup)
        matched, _ = adapter.match(path, method="POST", return_rule=True)
        assert matched.rule == rule, (rule, path)
        good = csrf(client.get("/login").data)
        stranger = csrf(app.test_client().get("/login").data)  # valid, for another session
        tampered = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
        for label, token in [
            ("no token", None),
            ("garbage token", "not-a-token"),
            ("tampered token", tampered),
            ("another session's token", stranger),
        ]:
            before = snapshot(engine)
            data = form if token is None else {**form, "csrf_token": token}
            response = client.post(path, data=data)
            if response.status_code != 400:
                problems.append(f"{rule} with {label}: {response.status_code}, expected 400")
            if changed := changed_tables(before, snapshot(engine)):
                problems.append(f"{rule} with {label} changed {changed}")
        before = snapshot(engine)
        response = client.post(path, data={**form, "csrf_token": good})
        errors = flashed_errors(client) if response.status_code == recipe.status else []
        if response.status_code != recipe.status or errors:
            problems.append(f"{rule} with the right token: {response.status_code} {errors}")
        elif recipe.changes and not changed_tables(before, snapshot(engine)):
            problems.append(f"{rule} with the right token changed nothing")

    for line in problems:
        print("CSRF problem:", line)
    assert not problems, "\n".join(problems)


def test_login_requires_the_csrf_token(setup: Setup, session) -> None:
    client = setup.app.test_client()
    token = csrf(client.get("/login").data)
    credentials = {"email": AGENT, "password": "password123"}
    assert client.post("/login", data=credentials).status_code == 400
    assert client.post("/login", data={**credentials, "csrf_token": "x"}).status_code == 400
    session.expire_all()
    assert session.scalars(select(WebSession)).all() == []
    assert client.get("/views/mine").status_code == 302  # still signed out
    assert client.post("/login", data={**credentials, "csrf_token": token}).status_code == 302
    assert client.get("/views/mine").status_code == 200


def test_session_cookie_flags(setup: Setup, settings, engine) -> None:
    from helpdesk.web import create_app

    client = setup.app.test_client()
    page = client.get("/login")
    response = client.post(
        "/login", data={"email": AGENT, "password": "password123", "csrf_token": csrf(page.data)}
    )
    cookies = [h for h in response.headers.getlist("Set-Cookie") if "helpdesk_session=" in h]
    assert cookies, response.headers
    for header in cookies:
        flags = {part.strip().lower() for part in header.split(";")[1:]}
        assert "httponly" in flags and "samesite=lax" in flags and "path=/" in flags, header
        assert not any(flag.startswith(("expires=", "max-age=")) for flag in flags), header
    # Behind TLS (secure_cookies), the cookie is also marked Secure.
    secure_app = create_app(replace(settings, secure_cookies=True), engine)
    secure = secure_app.test_client().get("/login", base_url="https://localhost")
    header = next(h for h in secure.headers.getlist("Set-Cookie") if "helpdesk_session=" in h)
    assert "secure" in {part.strip().lower() for part in header.split(";")[1:]}, header


def test_sign_in_rotates_the_session(setup: Setup) -> None:
    app = setup.app
    client = app.test_client()
    old_token = csrf(client.get("/login").data)
    with client.session_transaction() as session:
        session["planted"] = "by an attacker"
    before = client.get_cookie("helpdesk_session").value
    assert sign_in(client, AGENT).status_code == 302
    after = client.get_cookie("helpdesk_session").value
    assert before != after
    with client.session_transaction() as session:
        assert "planted" not in session
        first_id = session["_user_id"]
    # The CSRF token of the pre-login session is no good any more.
    note = f"/tickets/{setup.first}/note"
    assert client.post(note, data={"body": "x", "csrf_token": old_token}).status_code == 400
    # Whoever kept the pre-login cookie is not signed in.
    fixer = app.test_client()
    fixer.set_cookie("helpdesk_session", before)
    assert fixer.get("/views/mine").headers["Location"].startswith("/login")
    # Each sign-in gets its own server-side session.
    assert sign_in(client, AGENT).status_code == 302
    with client.session_transaction() as session:
        assert session["_user_id"] != first_id


def test_api_ignores_the_session_cookie(setup: Setup) -> None:
    """The API is exempt from CSRF because a browser's cookie cannot authenticate it."""
    client = client_for(setup.app, ADMIN)
    assert client.get("/views/all").status_code == 200
    assert client.get("/api/v1/tickets").status_code == 401
    assert client.get(f"/api/v1/tickets/{setup.first}").status_code == 401


# Browsers drop tabs and newlines inside URLs and read a backslash as a slash, so each of
# these would leave the site after signing in (or break the response header).
FOREIGN_NEXT = [
    "//evil.example/",
    "/%5Cevil.example/",
    "/%09/evil.example/",
    "/%0a/evil.example/",
    "/%0d%0a/evil.example/",
    "%20//evil.example/",
    "https://evil.example/",
]


@pytest.mark.parametrize("target", FOREIGN_NEXT)
def test_sign_in_redirects_only_within_the_site(setup: Setup, target: str) -> None:
    client = setup.app.test_client()
    token = csrf(client.get(f"/login?next={target}").data)
    response = client.post(
        f"/login?next={target}",
        data={"email": AGENT, "password": "password123", "csrf_token": token},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_sign_in_follows_a_local_next(setup: Setup) -> None:
    client = setup.app.test_client()
    redirect = client.get(f"/tickets/{setup.first}?html=1")
    assert redirect.status_code == 302
    login = redirect.headers["Location"]
    token = csrf(client.get(login).data)
    response = client.post(
        login, data={"email": AGENT, "password": "password123", "csrf_token": token}
    )
    assert response.headers["Location"] == f"/tickets/{setup.first}?html=1"


@pytest.mark.parametrize("back", ["//evil.example/", "/%09/evil.example/", "https://evil.example/"])
def test_bulk_action_returns_only_within_the_site(setup: Setup, back: str) -> None:
    client = client_for(setup.app, AGENT)
    token = csrf(client.get("/login").data)
    form = {"ticket": [str(setup.first)], "action": "close", "csrf_token": token}
    done = client.post("/tickets/bulk", data={**form, "back": unquote(back)})
    assert done.headers["Location"] == "/", done.headers["Location"]
    # A refused action goes back to the list it came from, never to another site.
    refused = client.post(
        "/tickets/bulk", data={**form, "ticket": []}, headers={"Referer": unquote(back)}
    )
    assert refused.headers["Location"] == "/", refused.headers["Location"]
    again = client.post("/tickets/bulk", data={**form, "ticket": [], "back": "/views/all?page=1"})
    assert again.headers["Location"] == "/views/all?page=1"
