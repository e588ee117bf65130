"""Rights on every route of the web app and the API, as a matrix.

The routes come from ``app.url_map`` itself, so a new route fails the test until
it is classified here with the rule it must follow. Tickets arrive as real mail
through the gateway, in three queues; every principal (anonymous, agents of one
queue or of two, manager, admin, and an agent deactivated after signing in)
requests every route for every target ticket, attachment or queue, and the
outcome is compared with what the rule says. All mismatches are collected and
printed before the one assertion, so a single run shows them all.

Outcomes: ``ok`` (2xx, or a redirect after a successful action, with no error
flashed), ``login`` (a redirect to /login?next=...), ``404`` for anything
outside the user's rights (never 403), ``401`` for the API without a valid
bearer token. Further tests check that lists, search and the API listing never
include other queues' tickets, and that bulk actions, moves, assignments and
merges cannot reach past the user's queues.
"""

from __future__ import annotations

import email.policy
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from helpdesk import db
from helpdesk.accounts import signin, users
from helpdesk.automation import macros
from helpdesk.automation import service as rule_service
from helpdesk.clock import utcnow
from helpdesk.models import (
    Attachment,
    Message,
    Queue,
    RawMail,
    SlaCalendar,
    SlaPolicy,
    Ticket,
    TicketEvent,
    User,
)
from helpdesk.tickets import canned
from tests.test_web_smoke import csrf, sign_in

QUEUES = ("help-desk", "service-desk", "tech-support")
WORD = "zebracorn"  # in the body of one ticket of every queue, and nowhere else
MISSING = 999_999
TOO_LARGE = 2**63  # no database column holds it: no route may match, nothing may crash

# Principals in the order they run: admin late, so that what the others must not
# reach (canned responses, users) still exists when they try.
PRINCIPALS = (
    "anonymous", "deactivated", "hd", "ts", "both", "read-token", "revoked-token", "manager",
    "admin",
)  # fmt: skip
# API-only principals: hd's read token (for writes too), and a write token of hd, revoked.
API_ONLY = ("read-token", "revoked-token")
WEB_PRINCIPALS = tuple(who for who in PRINCIPALS if who not in API_ONLY)
API_MERGERS = ("hd", "ts", "both", "manager", "admin")  # principals whose API merges get through
ACCOUNTS = {
    "hd": ("hd@example.com", "agent", ["help-desk"]),
    "ts": ("ts@example.com", "agent", ["tech-support"]),
    "both": ("both@example.com", "agent", ["help-desk", "tech-support"]),
    "manager": ("manager@example.com", "manager", []),
    "admin": ("admin@example.com", "admin", []),
    # Signs in with rights to two queues, then is deactivated before the matrix runs.
    "deactivated": ("gone@example.com", "agent", ["help-desk", "tech-support"]),
}
WALK_IN = "walkin@example.com"  # the account the anonymous client signs in with
VICTIM = "victim@example.com"  # the user admin pages deactivate and activate
SIGNED_OUT = ("anonymous", "deactivated")


def sees(who: str) -> set[str]:
    """The queues whose tickets a principal may see."""
    if who in ("manager", "admin"):
        return set(QUEUES)
    if who in SIGNED_OUT:
        return set()
    return set(ACCOUNTS["hd" if who in API_ONLY else who][2])


# --- the world: tickets by mail, users, signed-in clients -------------------------------


def mail(*, sender: str, queue: str, subject: str, body: str, attachment: str = "") -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = f"{queue}@example.com"
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="customer.example")
    message.set_content(body)
    if attachment:
        message.add_attachment(
            f"log of {subject}\n".encode(), maintype="text", subtype="plain", filename=attachment
        )
    return message.as_bytes(policy=email.policy.SMTP)


@dataclass
class World:
    app: Flask
    tickets: dict[str, int]  # queue slug -> the number of its main ticket
    attachments: dict[str, int]  # queue slug -> the id of its main ticket's attachment
    messages: dict[str, int]  # queue slug -> the id of its main ticket's first message
    merge_sources: dict[tuple[str, str], int]  # (principal, queue) -> a ticket to merge away
    api_merge_sources: dict[tuple[str, str], int]  # the same, for the API's merge
    merge_sinks: dict[str, int]  # queue slug -> the ticket merges go into
    queue_of: dict[int, str]  # every ticket number -> its queue slug
    queue_names: dict[str, str]
    tokens: dict[str, str]  # principal -> a read token
    write_tokens: dict[str, str]  # principal -> a write token
    clients: dict[str, FlaskClient]
    api: FlaskClient  # no cookies: the API must work (and fail) on the bearer token alone
    victim_id: int
    canned_id: int
    calendar_id: int
    policy_id: int
    raw_mail_id: int
    user_ids: dict[str, int] = field(default_factory=dict)
    spare_tokens: dict[str, int] = field(default_factory=dict)  # principal -> a token to revoke
    victim_token: int = 0
    rule_id: int = 0  # a rule every route may change
    doomed_rule_id: int = 0  # the rule the delete route removes
    macro_id: int = 0  # a macro for every queue (tags only)
    doomed_macro_id: int = 0

    def email(self, who: str) -> str:
        return ACCOUNTS[who][0] if who in ACCOUNTS else WALK_IN

    def api_get(self, who: str, path: str):  # type: ignore[no-untyped-def]
        token = self.tokens.get(who)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.api.get(path, headers=headers)

    def api_call(self, who: str, method: str, path: str, body: dict | None):  # type: ignore[no-untyped-def]
        """A read with the principal's read token, a change with its write token."""
        token = (self.tokens if method == "GET" else self.write_tokens).get(who)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.api.open(path, method=method, json=body, headers=headers)


def _write_session(engine):  # type: ignore[no-untyped-def]
    return db.session_factory(engine, write=True)()


@pytest.fixture
def world(app, gateway, make_user, engine, session) -> World:  # type: ignore[no-untyped-def]
    with gateway.smtp() as smtp:

        def send(queue: str, subject: str, body: str, attachment: str = "") -> None:
            sender = f"{re.sub(r'[^a-z0-9]+', '-', subject.lower())}@customer.example"
            raw = mail(
                sender=sender, queue=queue, subject=subject, body=body, attachment=attachment
            )
            smtp.sendmail(sender, [f"{queue}@example.com"], raw)

        for queue in QUEUES:
            send(queue, f"Main {queue}", f"The {WORD} in {queue} is broken.", f"{queue}.log")
            send(queue, f"Sink {queue}", "Merges land here.")
            for who in WEB_PRINCIPALS:
                send(queue, f"Source {who} {queue}", "Merged away in the matrix.")
            for who in API_MERGERS:
                send(queue, f"API source {who} {queue}", "Merged away through the API.")

    gateway.settle()
    session.expire_all()
    rows = session.execute(
        select(Ticket.number, Ticket.subject, Queue.slug).join(Queue, Ticket.queue_id == Queue.id)
    ).all()
    by_subject = {subject: number for number, subject, _ in rows}
    assert len(by_subject) == len(QUEUES) * (2 + len(WEB_PRINCIPALS) + len(API_MERGERS)), rows
    tickets = {q: by_subject[f"Main {q}"] for q in QUEUES}
    attachments = {
        q: session.scalars(
            select(Attachment.id)
            .join(Message, Attachment.message_id == Message.id)
            .join(Ticket, Message.ticket_id == Ticket.id)
            .where(Ticket.number == tickets[q])
        ).one()
        for q in QUEUES
    }
    messages = {
        q: session.scalars(
            select(Message.id)
            .join(Ticket, Message.ticket_id == Ticket.id)
            .where(Ticket.number == tickets[q], Message.kind == "inbound")
        ).one()
        for q in QUEUES
    }

    tokens, write_tokens = {}, {}
    for who, (address, role, queues_) in ACCOUNTS.items():
        tokens[who] = make_user(address, role, queues_)
    make_user(WALK_IN, "agent", ["help-desk"])
    make_user(VICTIM, "agent", ["service-desk"])
    with _write_session(engine) as write, write.begin():
        response = canned.create(write, title="Greeting", body="Hello!", queue=None, now=utcnow())
        write.flush()
        canned_id = response.id
    user_ids = dict(session.execute(select(User.email, User.id)).all())
    spare_tokens = {}
    with _write_session(engine) as write, write.begin():
        for email in [*(a[0] for a in ACCOUNTS.values()), WALK_IN, VICTIM]:
            row, _ = users.issue_token(write, write.get(User, user_ids[email]), now=utcnow())
            spare_tokens[email] = row.id
        for who, (address, _role, _queues) in ACCOUNTS.items():
            owner = write.get(User, user_ids[address])
            write_tokens[who] = users.create_token(write, owner, now=utcnow(), scope="write")
        hd = write.get(User, user_ids[ACCOUNTS["hd"][0]])
        tokens["read-token"] = write_tokens["read-token"] = tokens["hd"]
        revoked, tokens["revoked-token"] = users.issue_token(write, hd, now=utcnow(), scope="write")
        write_tokens["revoked-token"] = tokens["revoked-token"]
        users.revoke_token(write, revoked, now=utcnow())
    with _write_session(engine) as write, write.begin():
        rule_ids = [
            rule_service.save(write, None, {"name": name, "trigger": "ticket.created",
                              "actions": [{"add_tags": ["matrix"]}]}, now=utcnow()).id
            for name in ("Matrix rule", "Doomed rule")
        ]  # fmt: skip
        macro_ids = [
            macros.save(write, None, {"name": name, "actions": [{"add_tags": ["macro"]}]},
                        now=utcnow()).id
            for name in ("Matrix macro", "Doomed macro")
        ]  # fmt: skip

    clients = {"anonymous": app.test_client()}
    for who in ACCOUNTS:
        clients[who] = app.test_client()
        assert sign_in(clients[who], ACCOUNTS[who][0]).status_code == 302, who
    world = World(
        app=app,
        tickets=tickets,
        attachments=attachments,
        messages=messages,
        merge_sources={
            (w, q): by_subject[f"Source {w} {q}"] for w in WEB_PRINCIPALS for q in QUEUES
        },
        # Those refused before the ticket is looked at share hd's.
        api_merge_sources={
            (w, q): by_subject[f"API source {w if w in API_MERGERS else 'hd'} {q}"]
            for w in PRINCIPALS
            for q in QUEUES
        },
        merge_sinks={q: by_subject[f"Sink {q}"] for q in QUEUES},
        queue_of={number: slug for number, _, slug in rows},
        queue_names=dict(session.execute(select(Queue.slug, Queue.name)).all()),
        tokens=tokens,
        write_tokens=write_tokens,
        clients=clients,
        api=app.test_client(use_cookies=False),
        victim_id=user_ids[VICTIM],
        canned_id=canned_id,
        calendar_id=session.scalars(select(SlaCalendar.id)).first(),
        policy_id=session.scalars(select(SlaPolicy.id)).first(),
        raw_mail_id=session.scalars(select(RawMail.id)).first(),
        user_ids=user_ids,
        spare_tokens=spare_tokens,
        victim_token=spare_tokens[VICTIM],
        rule_id=rule_ids[0],
        doomed_rule_id=rule_ids[1],
        macro_id=macro_ids[0],
        doomed_macro_id=macro_ids[1],
    )

    # The deactivated agent's session and token work until the moment of deactivation.
    gone = clients["deactivated"]
    assert gone.get("/views/all?status=any").status_code == 200
    assert world.api_get("deactivated", "/api/v1/tickets").status_code == 200
    with _write_session(engine) as write, write.begin():
        signin.deactivate(write, write.get(User, user_ids[ACCOUNTS["deactivated"][0]]))
    return world


# --- routes and their rules ---------------------------------------------------------------

PUBLIC = "public"  # anyone, signed in or not
SIGN_IN = "sign-in"  # POST /login: anyone whose account is active
SIGNED_IN = "signed-in"  # any signed-in user
ADMIN = "admin"  # role admin; 404 for everyone else signed in
REPORTS = "reports"  # roles manager and admin; 404 for agents
TICKET = "ticket"  # only if the user sees the ticket's queue
QUEUE = "queue"  # only if the user sees the queue
API = "api"  # a valid bearer token
API_TICKET = "api-ticket"  # a valid bearer token whose user sees the ticket's queue
API_REPORTS = "api-reports"  # a valid bearer token of a manager or admin; 404 for agents
API_ADMIN = "api-admin"  # a valid bearer token of an admin; 404 for everyone else
API_CREATE = "api-create"  # a valid write token whose user works in the body's queue, else 422
API_KINDS = (API, API_TICKET, API_REPORTS, API_ADMIN, API_CREATE)


@dataclass
class Target:
    label: str
    args: Callable[[str], dict] | dict  # URL arguments, or a function of the principal
    queue: str | None = None  # the queue whose rights decide, if any
    exists: bool = True
    routable: bool = True  # False: no route matches, so 404 before any sign-in check

    def view_args(self, who: str) -> dict:
        return self.args(who) if callable(self.args) else self.args


@dataclass
class Route:
    kind: str
    targets: Callable[[World], list[Target]] = lambda w: [Target("-", {})]
    data: Callable[[World, str, Target], dict] | None = None  # the form of a POST
    query: str = ""
    last: int = 0  # routes that end or replace the session run last, in this order


def expected(kind: str, who: str, target: Target, method: str = "GET") -> str:
    signed_out = who in SIGNED_OUT or who == "revoked-token"
    if not target.routable:
        return "404"
    if kind in API_KINDS and not signed_out and method != "GET" and who == "read-token":
        return "403"  # a read token may not change anything, wherever it points
    if kind == PUBLIC:
        return "ok" if target.exists else "404"
    if kind == SIGN_IN:
        return "401" if who == "deactivated" else "ok"
    if kind in API_KINDS:
        if signed_out:
            return "401"
    elif signed_out:
        return "login"
    if not target.exists:
        return "404"
    if kind == ADMIN and who != "admin":
        return "404"
    if kind in (REPORTS, API_REPORTS) and who not in ("manager", "admin"):
        return "404"
    if kind == API_ADMIN and who != "admin":
        return "404"
    if target.queue is not None and target.queue not in sees(who):
        return "422" if kind == API_CREATE else "404"
    return "ok"


def absent(key: str) -> list[Target]:
    """A missing id, and one too large for any database column."""
    return [
        Target("missing", {key: MISSING}, exists=False),
        Target("too large", {key: TOO_LARGE}, exists=False, routable=False),
    ]


def tickets_(w: World) -> list[Target]:
    return [Target(q, {"number": w.tickets[q]}, queue=q) for q in QUEUES] + [*absent("number")]


def attachments_(w: World) -> list[Target]:
    return [
        *(
            Target(q, {"number": w.tickets[q], "attachment_id": w.attachments[q]}, queue=q)
            for q in QUEUES
        ),
        Target(
            "another ticket's attachment",
            {"number": w.tickets["help-desk"], "attachment_id": w.attachments["tech-support"]},
            exists=False,
        ),
        Target(
            "missing attachment",
            {"number": w.tickets["help-desk"], "attachment_id": MISSING},
            exists=False,
        ),
        Target(
            "attachment id too large",
            {"number": w.tickets["help-desk"], "attachment_id": TOO_LARGE},
            exists=False,
            routable=False,
        ),
    ]


def originals(w: World) -> list[Target]:
    """A message's original, by ticket and message id (another ticket's is no target)."""
    return [
        *(
            Target(q, {"number": w.tickets[q], "message_id": w.messages[q]}, queue=q)
            for q in QUEUES
        ),
        Target(
            "another ticket's message",
            {"number": w.tickets["help-desk"], "message_id": w.messages["tech-support"]},
            exists=False,
        ),
        Target(
            "missing message",
            {"number": w.tickets["help-desk"], "message_id": MISSING},
            exists=False,
        ),
    ]


def merge_sources(w: World) -> list[Target]:
    def source(queue: str) -> Callable[[str], dict]:
        return lambda who: {"number": w.merge_sources[(who, queue)]}

    return [Target(q, source(q), queue=q) for q in QUEUES] + [*absent("number")]


def queues_(w: World, *, scoped: bool = True) -> list[Target]:
    return [Target(q, {"slug": q}, queue=q if scoped else None) for q in QUEUES] + [
        Target("missing", {"slug": "no-such-queue"}, exists=False)
    ]


def _api_merge_source(w: World, queue: str) -> Callable[[str], dict]:
    return lambda who: {"number": w.api_merge_sources[(who, queue)]}


def reports_(w: World) -> list[Target]:
    return [Target(k, {"kind": k}) for k in ("figures", "tickets")]


def raw_mails_(w: World) -> list[Target]:
    return [Target("raw mail", {"raw_mail_id": w.raw_mail_id}), *absent("raw_mail_id")]


def calendars_(w: World) -> list[Target]:
    return [
        Target("new", {}),
        Target("calendar", {"calendar_id": w.calendar_id}),
        *absent("calendar_id"),
    ]


def policies_(w: World, new: bool = True) -> list[Target]:
    return [
        *([Target("new", {})] if new else []),
        Target("policy", {"policy_id": w.policy_id}),
        *absent("policy_id"),
    ]


def rules_(w: World, new: bool = True) -> list[Target]:
    return [
        *([Target("new", {})] if new else []),
        Target("rule", {"rule_id": w.rule_id}),
        *absent("rule_id"),
    ]


def macros_(w: World, new: bool = True) -> list[Target]:
    return [
        *([Target("new", {})] if new else []),
        Target("macro", {"macro_id": w.macro_id}),
        *absent("macro_id"),
    ]


def rule_form(w: World, who: str, t: Target) -> dict:
    return {
        "do": "save", "name": f"Rule {who} {t.label}", "trigger": "ticket.created",
        "position": "50", "match": "all", "conditions-0-field": "queue",
        "conditions-0-op": "is", "conditions-0-value": "help-desk", "also_match": "any",
        "actions-0-kind": "add_tags", "actions-0-value": "matrix",
    }  # fmt: skip


def macro_form(w: World, who: str, t: Target) -> dict:
    return {
        "name": f"Macro {who} {t.label}", "queue": "", "position": "5", "reply": "",
        "actions-0-kind": "priority", "actions-0-value": "high",
    }  # fmt: skip


def calendar_form(w: World, who: str, t: Target) -> dict:
    weekly = "\n".join(f"{day} 09:00-17:00" for day in ("mon", "tue", "wed", "thu", "fri"))
    return {"name": f"Hours {who} {t.label}", "timezone": "UTC", "weekly": weekly, "holidays": ""}


def policy_form(w: World, who: str, t: Target) -> dict:
    return {
        "name": f"Policy {who} {t.label}",
        "position": "5",
        "queue": "",
        "priority": "",
        "calendar": str(w.calendar_id),
        "first_response_minutes": "60",
        "resolution_minutes": "480",
        "warn_percent": "80",
    }


def reply_form(w: World, who: str, t: Target) -> dict:
    return {"body": f"Reply from {who}.", "seen": "0", "confirm": "y"}


def queue_form(w: World, who: str, t: Target) -> dict:
    slug = t.label if t.exists else "help-desk"
    return {
        "name": w.queue_names[slug],
        "email_address": f"{slug}@example.com",
        "extra_addresses": "",
        "closed_reply_policy": "reopen",
    }


ROUTES: dict[tuple[str, str], Route] = {
    ("static", "GET"): Route(
        PUBLIC,
        lambda w: [
            Target("app.css", {"filename": "app.css"}),
            Target("missing", {"filename": "no-such-file.css"}, exists=False),
        ],
    ),
    ("login.login", "GET"): Route(PUBLIC),
    ("login.login", "POST"): Route(
        SIGN_IN, data=lambda w, who, t: {"email": w.email(who), "password": "password123"}, last=2
    ),
    ("login.logout", "POST"): Route(SIGNED_IN, data=lambda w, who, t: {}, last=1),
    ("views.index", "GET"): Route(SIGNED_IN),
    ("views.view", "GET"): Route(
        SIGNED_IN,
        lambda w: [
            *(Target(n, {"name": n}) for n in ("mine", "unassigned", "all")),
            Target("bogus", {"name": "bogus"}, exists=False),
        ],
        query="status=any",
    ),
    ("views.queue", "GET"): Route(QUEUE, queues_, query="status=any"),
    ("views.search", "GET"): Route(SIGNED_IN, query=f"q={WORD}&status=any"),
    ("views.bulk_update", "POST"): Route(
        SIGNED_IN,
        data=lambda w, who, t: {
            "ticket": [str(n) for n in w.tickets.values()],
            "action": "status",
            "value": "open",
            "back": "/views/all",
        },
    ),
    ("tickets.show", "GET"): Route(TICKET, tickets_),
    ("tickets.reply", "POST"): Route(TICKET, tickets_, reply_form),
    ("tickets.note", "POST"): Route(
        TICKET, tickets_, lambda w, who, t: {"body": f"Note from {who}."}
    ),
    ("tickets.properties", "POST"): Route(
        TICKET, tickets_, lambda w, who, t: {"status": "open", "priority": "normal"}
    ),
    ("tickets.assignee", "POST"): Route(
        TICKET, tickets_, lambda w, who, t: {"value": w.email(who)}
    ),
    # Into the queue the ticket is in: passes the same checks as a real move, changes nothing.
    ("tickets.move", "POST"): Route(
        TICKET, tickets_, lambda w, who, t: {"value": t.queue or "help-desk"}
    ),
    ("tickets.tags", "POST"): Route(
        TICKET, tickets_, lambda w, who, t: {"value": "matrix, rights"}
    ),
    ("tickets.merge", "POST"): Route(
        TICKET,
        merge_sources,
        lambda w, who, t: {"value": str(w.merge_sinks.get(t.label, w.merge_sinks["help-desk"]))},
    ),
    ("tickets.presence_state", "GET"): Route(TICKET, tickets_),
    ("tickets.attachment", "GET"): Route(TICKET, attachments_),
    ("tickets.original", "GET"): Route(TICKET, originals),
    ("admin.users_page", "GET"): Route(ADMIN),
    ("admin.users_page", "POST"): Route(
        ADMIN,
        data=lambda w, who, t: {
            "email": f"new-{who}@example.com",
            "name": "New",
            "role": "agent",
            "queues": ["help-desk"],
            "password": "",
        },
    ),
    ("admin.deactivate", "POST"): Route(
        ADMIN,
        lambda w: [
            Target("victim", {"user_id": w.victim_id}),
            *absent("user_id"),
        ],
        lambda w, who, t: {},
    ),
    ("admin.activate", "POST"): Route(
        ADMIN,
        lambda w: [
            Target("victim", {"user_id": w.victim_id}),
            *absent("user_id"),
        ],
        lambda w, who, t: {},
    ),
    ("admin.queues_page", "GET"): Route(ADMIN),
    ("admin.queue_page", "GET"): Route(ADMIN, lambda w: queues_(w, scoped=False)),
    ("admin.queue_page", "POST"): Route(ADMIN, lambda w: queues_(w, scoped=False), queue_form),
    ("admin.canned_page", "GET"): Route(ADMIN),
    ("admin.canned_page", "POST"): Route(
        ADMIN, data=lambda w, who, t: {"title": f"From {who}", "body": "Hello.", "queue": ""}
    ),
    ("admin.canned_delete", "POST"): Route(
        ADMIN,
        lambda w: [
            Target("greeting", {"response_id": w.canned_id}),
            *absent("response_id"),
        ],
        lambda w, who, t: {},
    ),
    ("mail_admin.index", "GET"): Route(ADMIN),
    ("mail_admin.original", "GET"): Route(ADMIN, raw_mails_),
    ("mail_admin.reprocess_all", "POST"): Route(ADMIN, data=lambda w, who, t: {}),
    ("mail_admin.reprocess_one", "POST"): Route(ADMIN, raw_mails_, lambda w, who, t: {}),
    ("sla_admin.index", "GET"): Route(ADMIN),
    ("sla_admin.calendar_page", "GET"): Route(ADMIN, calendars_),
    ("sla_admin.calendar_page", "POST"): Route(ADMIN, calendars_, calendar_form),
    ("sla_admin.import_holidays", "POST"): Route(
        ADMIN,
        lambda w: calendars_(w)[1:],
        lambda w, who, t: {"years": "2026", "country": "DE", "subdivision": ""},
    ),
    ("sla_admin.policy_page", "GET"): Route(ADMIN, policies_),
    ("sla_admin.policy_page", "POST"): Route(ADMIN, policies_, policy_form),
    ("sla_admin.policy_delete", "POST"): Route(
        ADMIN, lambda w: policies_(w, new=False), lambda w, who, t: {}
    ),
    ("rules_admin.index", "GET"): Route(ADMIN),
    ("rules_admin.rule_page", "GET"): Route(ADMIN, rules_),
    ("rules_admin.rule_page", "POST"): Route(ADMIN, rules_, rule_form),
    **{
        ("rules_admin." + verb, "POST"): Route(
            ADMIN, lambda w: rules_(w, new=False), lambda w, who, t: {}
        )
        for verb in ("enable", "disable", "up", "down")
    },
    ("rules_admin.delete", "POST"): Route(
        ADMIN,
        lambda w: [Target("rule", {"rule_id": w.doomed_rule_id}), *absent("rule_id")],
        lambda w, who, t: {},
    ),
    ("macros_admin.index", "GET"): Route(ADMIN),
    ("macros_admin.macro_page", "GET"): Route(ADMIN, macros_),
    ("macros_admin.macro_page", "POST"): Route(ADMIN, macros_, macro_form),
    ("macros_admin.macro_delete", "POST"): Route(
        ADMIN,
        lambda w: [Target("macro", {"macro_id": w.doomed_macro_id}), *absent("macro_id")],
        lambda w, who, t: {},
    ),
    ("macros_admin.apply_one", "POST"): Route(
        TICKET, tickets_, lambda w, who, t: {"macro": str(w.macro_id)}
    ),
    ("macros_admin.apply_selected", "POST"): Route(
        SIGNED_IN,
        data=lambda w, who, t: {
            "ticket": [str(n) for n in w.tickets.values()],
            "macro": str(w.macro_id),
            "back": "/views/all",
        },
    ),
    ("admin.me", "GET"): Route(SIGNED_IN),
    ("tokens.mine", "GET"): Route(SIGNED_IN),
    ("tokens.mine", "POST"): Route(
        SIGNED_IN, data=lambda w, who, t: {"name": f"matrix {who}", "scope": "write"}
    ),
    ("tokens.revoke_mine", "POST"): Route(
        SIGNED_IN,
        lambda w: [
            Target("own", lambda who: {"token_id": w.spare_tokens[w.email(who)]}),
            Target("the victim's", {"token_id": w.victim_token}, exists=False),
            *absent("token_id"),
        ],
        lambda w, who, t: {},
    ),
    ("tokens.everyone", "GET"): Route(ADMIN),
    ("tokens.revoke_any", "POST"): Route(
        ADMIN,
        lambda w: [
            Target("the walk-in's", {"token_id": w.spare_tokens[WALK_IN]}),
            *absent("token_id"),
        ],
        lambda w, who, t: {},
    ),
    ("admin.me", "POST"): Route(SIGNED_IN, data=lambda w, who, t: {"notify_assigned": "y"}),
    ("reports.sla", "GET"): Route(REPORTS),
    ("reports.sla_csv", "GET"): Route(REPORTS, reports_),
    ("api.openapi", "GET"): Route(PUBLIC),
    ("api.create_ticket", "POST"): Route(
        API_CREATE,
        lambda w: [Target(q, {}, queue=q) for q in QUEUES],
        lambda w, who, t: {
            "queue": t.label,
            "requester": {"email": "matrix@customer.example"},
            "subject": f"From {who}",
            "text": "Opened through the API.",
        },
    ),
    ("api.update_ticket", "PATCH"): Route(
        API_TICKET, tickets_, lambda w, who, t: {"priority": "normal", "status": "open"}
    ),
    ("api.create_reply", "POST"): Route(
        API_TICKET, tickets_, lambda w, who, t: {"text": f"API reply from {who}."}
    ),
    ("api.create_note", "POST"): Route(
        API_TICKET, tickets_, lambda w, who, t: {"text": f"API note from {who}."}
    ),
    ("api.merge_ticket", "POST"): Route(
        API_TICKET,
        lambda w: [
            *(Target(q, _api_merge_source(w, q), queue=q) for q in QUEUES),
            *absent("number"),
        ],
        lambda w, who, t: {"into": w.merge_sinks.get(t.label, w.merge_sinks["help-desk"])},
    ),
    ("api.list_queues", "GET"): Route(API),
    ("api.list_users", "GET"): Route(API_ADMIN),
    ("api_docs.docs", "GET"): Route(PUBLIC),
    ("api.list_tickets", "GET"): Route(API, query="status=any"),
    ("api.show_ticket", "GET"): Route(API_TICKET, tickets_),
    ("api.download_attachment", "GET"): Route(API_TICKET, attachments_),
    ("api.sla_report", "GET"): Route(API_REPORTS),
}


def route_table(app: Flask) -> tuple[list[tuple[str, str]], set[tuple[str, str]], list[str]]:
    """Every (endpoint, method) of the app, every (rule, method), and what is not classified."""
    found, rules, problems = [], set(), []
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            rules.add((rule.rule, method))
            if (rule.endpoint, method) in found:
                continue  # another rule of the same view: its targets must reach both
            found.append((rule.endpoint, method))
            if (rule.endpoint, method) not in ROUTES:
                problems.append(f"not classified: {method} {rule.rule} ({rule.endpoint})")
    problems += [f"classified but gone: {m} {e}" for e, m in ROUTES if (e, m) not in found]
    return found, rules, problems


def flashed_errors(client: FlaskClient) -> list[str]:
    with client.session_transaction() as session:
        return [text for category, text in session.pop("_flashes", []) if category == "error"]


def outcome(client: FlaskClient | None, response) -> str:  # type: ignore[no-untyped-def]
    if response.status_code in (301, 302, 303, 307, 308):
        location = urlsplit(response.headers["Location"])
        if location.path == "/login" and "next=" in location.query:
            return "login"
    if response.status_code >= 400:
        return str(response.status_code)
    errors = flashed_errors(client) if client is not None else []
    return f"refused ({errors[0]})" if errors else "ok"


def request(  # type: ignore[no-untyped-def]
    world: World, client: FlaskClient, who: str, route: Route, method: str, path: str, target
) -> str:
    if route.kind in API_KINDS:
        body = route.data(world, who, target) if route.data and method != "GET" else None
        return outcome(None, world.api_call(who, method, path, body))
    if method == "GET":
        return outcome(client, client.get(path))
    assert route.data is not None, path
    form = route.data(world, who, target)
    form["csrf_token"] = csrf(client.get("/login").data)
    return outcome(client, client.post(path, data=form))


def test_rights_matrix(world: World, capsys) -> None:  # type: ignore[no-untyped-def]
    app = world.app
    found, rules, problems = route_table(app)
    assert not problems, "\n".join(problems)
    adapter = app.url_map.bind("localhost")
    cells = sorted(found, key=lambda item: ROUTES[item].last)
    reached: set[tuple[str, str]] = set()

    mismatches: list[str] = []
    tally: Counter[str] = Counter()
    size = 0
    for who in PRINCIPALS:
        client = world.clients.get(who)
        for endpoint, method in cells:
            route = ROUTES[(endpoint, method)]
            if who in API_ONLY and route.kind not in API_KINDS:
                continue
            for target in route.targets(world):
                path = adapter.build(endpoint, target.view_args(who), method=method)
                if target.routable:
                    rule, _ = adapter.match(urlsplit(path).path, method=method, return_rule=True)
                    reached.add((rule.rule, method))
                if route.query:
                    path += ("&" if "?" in path else "?") + route.query
                try:
                    got = request(world, client, who, route, method, path, target)
                except Exception as exc:  # the app raises in testing mode: collect it too
                    got = f"exception {exc.__class__.__name__}: {str(exc)[:80]}"
                want = expected(route.kind, who, target, method)
                size += 1
                tally[f"{who}:{got}"] += 1
                if got != want:
                    mismatches.append(
                        f"{who:<11} {method:<4} {path:<48} [{target.label}] "
                        f"expected {want}, got {got}"
                    )

    mismatches += [f"no target reaches {m} {r}" for r, m in sorted(rules - reached)]
    with capsys.disabled():
        print(
            f"\nrights matrix: {len(PRINCIPALS)} principals x {len(rules)} routes "
            f"({len(found)} views) x their targets = {size} cells"
        )
        for who in PRINCIPALS:
            summary = ", ".join(
                f"{k.split(':', 1)[1]} {v}" for k, v in sorted(tally.items()) if k.startswith(who)
            )
            print(f"  {who:<11} {summary}")
        for line in mismatches:
            print("  MISMATCH", line)
    assert not mismatches, f"{len(mismatches)} mismatches:\n" + "\n".join(mismatches)


def test_deactivation_stops_session_and_token_at_once(world: World) -> None:
    """Deactivated by an admin through the web app: the agent's next request fails."""
    agent, admin = world.clients["hd"], world.clients["admin"]
    assert agent.get("/views/all").status_code == 200
    assert world.api_get("hd", "/api/v1/tickets").status_code == 200
    token = csrf(admin.get("/admin/users").data)
    user_id = world.user_ids["hd@example.com"]
    deactivated = admin.post(f"/admin/users/{user_id}/deactivate", data={"csrf_token": token})
    assert deactivated.status_code == 302
    assert outcome(agent, agent.get("/views/all")) == "login"
    assert outcome(agent, agent.get(f"/tickets/{world.tickets['help-desk']}")) == "login"
    assert world.api_get("hd", "/api/v1/tickets").status_code == 401
    # Activating again does not bring back the old session or token.
    admin.post(f"/admin/users/{user_id}/activate", data={"csrf_token": token})
    assert outcome(agent, agent.get("/views/all")) == "login"
    assert world.api_get("hd", "/api/v1/tickets").status_code == 401


# --- lists, search and the API listing stay inside the user's queues -----------------------

LISTED = re.compile(r'name="ticket" value="(\d+)"')


def test_lists_show_only_visible_queues(world: World) -> None:
    problems: list[str] = []
    for who in ("hd", "ts", "both", "manager", "admin"):
        problems += list_problems(world, who)
    assert not problems, "\n".join(problems)


def list_problems(world: World, who: str) -> list[str]:
    client, visible = world.clients[who], sees(who)
    problems = []

    def check(where: str, numbers: set[int], want: set[int] | None = None) -> None:
        foreign = sorted(n for n in numbers if world.queue_of[n] not in visible)
        if foreign:
            problems.append(f"{who}: {where} lists tickets of other queues: {foreign}")
        if want is not None and numbers != want:
            problems.append(f"{who}: {where} lists {sorted(numbers)}, expected {sorted(want)}")

    with_word = {world.tickets[q] for q in visible}
    everything = {n for n, q in world.queue_of.items() if q in visible}
    pages = {
        "/views/all?status=any": None,
        "/views/unassigned?status=any": None,
        "/views/mine?status=any": None,
        f"/search?q={WORD}&status=any": with_word,
        "/search?q=customer.example&status=any": None,
        **{f"/search?q={world.tickets[q]}&status=any": set() for q in QUEUES if q not in visible},
        **{f"/queues/{q}?status=any": None for q in visible},
    }
    for path, want in pages.items():
        response = client.get(path)
        assert response.status_code == 200, path
        html = response.get_data(as_text=True)
        check(path, {int(n) for n in LISTED.findall(html)}, want)
        sidebar = set(re.findall(r'href="/queues/([\w-]+)"', html))
        if sidebar != visible:
            problems.append(f"{who}: {path} sidebar shows queues {sorted(sidebar)}")
        # Every ticket is still active, so "everything" counts exactly the visible ones.
        counted = re.search(r'data-view="all">(\d+)<', html)
        if counted is None or int(counted.group(1)) != len(everything):
            problems.append(f"{who}: {path} sidebar counts {counted and counted.group(1)}")
    # Sanity: the listings above are not empty by accident.
    all_page = client.get("/views/all?status=any").get_data(as_text=True)
    check("/views/all?status=any", {int(n) for n in LISTED.findall(all_page)}, everything)

    api = {
        "/api/v1/tickets?status=any": everything,
        f"/api/v1/tickets?status=any&q={WORD}": with_word,
        **{f"/api/v1/tickets?status=any&queue={q}": None for q in visible},
    }
    for path, want in api.items():
        response = world.api_get(who, path)
        assert response.status_code == 200, path
        check(path, {t["number"] for t in response.get_json()["tickets"]}, want)
    missing = world.api_get(who, "/api/v1/tickets?queue=no-such-queue")
    for q in sorted(set(QUEUES) - visible):
        hidden = world.api_get(who, f"/api/v1/tickets?queue={q}")
        # An invisible queue answers exactly like one that does not exist.
        if (hidden.status_code, hidden.get_json()) != (missing.status_code, missing.get_json()):
            problems.append(f"{who}: API queue={q}: {hidden.status_code} {hidden.get_json()}")
    return problems


# --- writes cannot reach past the user's queues -----------------------------------------


def ticket_state(session, world: World) -> dict[int, tuple]:  # type: ignore[no-untyped-def]
    session.expire_all()
    rows = session.execute(
        select(
            Ticket.number,
            Ticket.queue_id,
            Ticket.status,
            Ticket.priority,
            Ticket.assignee_id,
            Ticket.merged_into_id,
            select(func.count(Message.id)).where(Message.ticket_id == Ticket.id).scalar_subquery(),
            select(func.count(TicketEvent.id))
            .where(TicketEvent.ticket_id == Ticket.id)
            .scalar_subquery(),
        )
    ).all()
    return {row[0]: tuple(row[1:]) for row in rows}


def post(client: FlaskClient, path: str, data: dict):  # type: ignore[no-untyped-def]
    data = {**data, "csrf_token": csrf(client.get("/login").data)}
    response = client.post(path, data=data)
    assert response.status_code == 302, (path, response.status_code)
    return outcome(client, response)


def test_bulk_actions_change_nothing_outside_rights(world: World, session) -> None:
    client, hd, ts, sd = (
        world.clients["hd"],
        world.tickets["help-desk"],
        world.tickets["tech-support"],
        world.tickets["service-desk"],
    )
    before = ticket_state(session, world)

    def bulk(numbers: list[int], action: str, value: str = "") -> str:
        form = {"ticket": [str(n) for n in numbers], "action": action, "value": value}
        return post(client, "/tickets/bulk", form)

    for action, value in [("close", ""), ("status", "pending"), ("assign", "hd@example.com")]:
        bulk([ts, sd], action, value)
        assert ticket_state(session, world) == before, action
    bulk([ts, sd], "move", "help-desk")
    assert ticket_state(session, world) == before

    # Moving a visible ticket into a queue the agent is not in is refused.
    assert bulk([hd], "move", "tech-support").startswith("refused")
    # Assigning to someone who cannot see the queue is refused.
    assert bulk([hd], "assign", "ts@example.com").startswith("refused")
    assert bulk([hd], "assign", "gone@example.com").startswith("refused")
    assert ticket_state(session, world) == before

    # A mixed selection changes only the visible ticket.
    assert bulk([hd, ts, sd], "close") == "ok"
    after = ticket_state(session, world)
    assert after[hd][1] == "closed"
    assert {n: s for n, s in after.items() if n != hd} == {
        n: s for n, s in before.items() if n != hd
    }


def test_move_into_a_queue_you_are_not_in_is_refused(world: World, session) -> None:
    hd, both = world.clients["hd"], world.clients["both"]
    number = world.tickets["help-desk"]
    before = ticket_state(session, world)
    assert post(hd, f"/tickets/{number}/queue", {"value": "tech-support"}).startswith("refused")
    assert post(hd, f"/tickets/{number}/queue", {"value": "service-desk"}).startswith("refused")
    assert post(both, f"/tickets/{number}/queue", {"value": "service-desk"}).startswith("refused")
    assert ticket_state(session, world) == before
    # The same move into a queue the agent is in goes through, and the assignee who
    # could not follow the ticket there is unassigned.
    assert post(hd, f"/tickets/{number}/assignee", {"value": "hd@example.com"}) == "ok"
    assert post(both, f"/tickets/{number}/queue", {"value": "tech-support"}) == "ok"
    session.expire_all()
    moved = session.scalars(select(Ticket).where(Ticket.number == number)).one()
    assert (moved.queue.slug, moved.assignee) == ("tech-support", None)
    assert outcome(hd, hd.get(f"/tickets/{number}")) == "404"


def test_assigning_to_someone_who_cannot_see_the_queue_is_refused(world: World, session) -> None:
    hd, admin = world.clients["hd"], world.clients["admin"]
    mine, theirs = world.tickets["help-desk"], world.tickets["tech-support"]
    before = ticket_state(session, world)
    for assignee in ("ts@example.com", "gone@example.com", VICTIM, "nobody@example.com"):
        got = post(hd, f"/tickets/{mine}/assignee", {"value": assignee})
        assert got.startswith("refused"), assignee
    assert post(admin, f"/tickets/{theirs}/assignee", {"value": "hd@example.com"}).startswith(
        "refused"
    )
    assert ticket_state(session, world) == before
    assert post(hd, f"/tickets/{mine}/assignee", {"value": "both@example.com"}) == "ok"
    assert post(admin, f"/tickets/{theirs}/assignee", {"value": "manager@example.com"}) == "ok"


def test_merging_into_a_ticket_outside_rights_is_refused(world: World, session) -> None:
    hd = world.clients["hd"]
    mine = world.tickets["help-desk"]
    before = ticket_state(session, world)
    for target in (world.tickets["tech-support"], world.tickets["service-desk"], MISSING):
        got = post(hd, f"/tickets/{mine}/merge", {"value": str(target)})
        assert got.startswith("refused"), target
    assert ticket_state(session, world) == before


def test_numbers_too_large_for_the_database_are_not_errors(world: World) -> None:
    """A number no column can hold, typed into a search, a form or a query string, is
    like any other missing ticket: no database error, no 500."""
    client, number = world.clients["admin"], world.tickets["help-desk"]
    problems = []
    for big in (str(2**31), str(10**20)):
        cases = [
            ("GET", f"/search?q={big}&status=any", None, {"ok"}),
            ("GET", f"/views/all?page={big}", None, {"ok", "400"}),
            ("GET", f"/tickets/{number}/presence?after={big}", None, {"ok"}),
            ("POST", f"/tickets/{number}/merge", {"value": big}, {"refused"}),
            ("POST", "/tickets/bulk", {"ticket": [big], "action": "close"}, {"refused"}),
            (
                "POST",
                f"/tickets/{number}/reply",
                {"body": "Hi", "seen": big, "confirm": "y"},
                {"ok"},
            ),
            ("API", f"/api/v1/tickets?q={big}", None, {"ok"}),
            ("API", f"/api/v1/tickets?page={big}", None, {"ok", "422"}),
        ]
        for method, path, form, allowed in cases:
            try:
                if method == "API":
                    got = outcome(None, world.api_get("admin", path))
                elif method == "GET":
                    got = outcome(client, client.get(path))
                else:
                    form = {**form, "csrf_token": csrf(client.get("/login").data)}
                    got = outcome(client, client.post(path, data=form))
            except Exception as exc:  # the app raises in testing mode
                got = f"exception {exc.__class__.__name__}"
            if got.split(" (")[0] not in allowed:
                problems.append(f"{method} {path} {form or ''}: {got}")
    assert not problems, "\n".join(problems)
