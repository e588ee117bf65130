"""Outbound mail end to end: the durable outbox delivered by the worker to a real SMTP sink.

On SQLite and PostgreSQL, tickets come from real mail through the gateway (or
from the reply service), and ``OutboxWorker.run_once`` delivers them to the
``relay`` fixture (an aiosmtpd sink) under a controllable clock. Covered: the
headers of acknowledgements and agent replies as they arrive on the wire,
retries after a 4xx and a dead relay, permanent failure after a 5xx (visible in
the API), leases of crashed workers, header injection, suppressed addresses,
attachments, a customer's answer to the acknowledgement threading back, and
several workers never sending one mail twice, even when a slow relay makes a
round outlast its lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import hashlib
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from email import policy
from email.message import EmailMessage

import pytest
from sqlalchemy import Engine, func, select

from helpdesk.accounts import users
from helpdesk.clock import utcnow
from helpdesk.db import session_factory
from helpdesk.mail.compose import HeaderInjection
from helpdesk.mail.messageid import verify_message_id
from helpdesk.models import Contact, Message, OutboxMail, Ticket, User
from helpdesk.outbound.outbox import LEASE, claim_due
from helpdesk.settings import Settings
from helpdesk.subscribers import writing_sessions
from helpdesk.tickets import lifecycle
from helpdesk.tickets.conversation import reply
from mailgate.outbox_sender import OutboxWorker
from tests.conftest import SECRET, Relay, SinkHandler, free_port, start_relay

SENDER = "alice@customer.example"
CC = "bob@customer.example"
QUEUE_ADDRESS = "help-desk@example.com"
AGENT = "agent@example.com"


class Clock:
    """The worker's clock: starts at the real time and moves only when told."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta

    def move_past(self, moment: datetime) -> None:
        self.now = max(self.now, moment + timedelta(seconds=1))

    def catch_up(self) -> None:
        """Come forward to the real time, so mail queued since is due."""
        self.now = max(self.now, utcnow())


def customer_mail(
    message_id: str,
    *,
    sender: str = SENDER,
    subject: str = "Printer broken",
    cc: str = "",
    headers: str = "",
    body: str = "My printer is broken.",
) -> bytes:
    """A customer's message to the help-desk queue, with CRLF line endings."""
    lines = [
        f"From: Alice Example <{sender}>",
        f"To: {QUEUE_ADDRESS}",
        *([f"Cc: {cc}"] if cc else []),
        f"Subject: {subject}",
        f"Message-ID: {message_id}",
        "Date: Thu, 26 Nov 2026 09:00:00 +0100",
        *([headers] if headers else []),
        "",
        body,
        "",
    ]
    return "\r\n".join(lines).encode()


def make_worker(
    engine: Engine, settings: Settings, clock: Clock, **options: object
) -> OutboxWorker:
    return OutboxWorker(writing_sessions(engine, settings), settings, clock=clock, **options)


def deliver(worker: OutboxWorker, *, rounds: int = 20) -> int:
    """Run rounds until nothing is due (bounded); returns how many rows were attempted."""
    attempted = 0
    for _ in range(rounds):
        done = worker.run_once()
        if not done:
            return attempted
        attempted += done
    raise AssertionError(f"the outbox was still busy after {rounds} rounds")


def outbox(engine: Engine, purpose: str | None = None) -> list[OutboxMail]:
    """The outbox rows as committed now (read in a fresh session)."""
    stmt = select(OutboxMail).order_by(OutboxMail.id)
    if purpose:
        stmt = stmt.where(OutboxMail.purpose == purpose)
    with session_factory(engine)() as session:
        return list(session.scalars(stmt))


def messages(engine: Engine, number: int = 1) -> list[Message]:
    with session_factory(engine)() as session:
        stmt = select(Message).join(Ticket).where(Ticket.number == number).order_by(Message.id)
        return list(session.scalars(stmt))


def count(engine: Engine, model: type) -> int:
    with session_factory(engine)() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def parsed(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=policy.default)  # type: ignore[return-value]


def received(relay, to: str | None = None) -> list[tuple[str, list[str], EmailMessage, bytes]]:  # type: ignore[no-untyped-def]
    """What the sink got: (envelope sender, recipients, parsed message, raw bytes)."""
    return [
        (mail_from, rcpts, parsed(data), data)
        for mail_from, rcpts, data in relay.messages
        if to is None or to in rcpts
    ]


def agent_reply(
    engine: Engine,
    settings: Settings,
    number: int = 1,
    *,
    text: str = "Please restart the printer.",
    name: str = "Dana Agent",
    attachments: list[tuple[str, str, bytes]] | None = None,
) -> tuple[int, int | None]:
    """Reply as the help-desk agent; returns (outbound message id, outbox row id or None)."""
    with writing_sessions(engine, settings)() as session, session.begin():
        agent = users.add_or_update(
            session, AGENT, role="agent", queue_slugs=["help-desk"], name=name, now=utcnow()
        )
        ticket = lifecycle.by_number(session, number)
        assert ticket is not None
        message, row = reply(
            session, ticket, actor=agent, text=text, settings=settings, now=utcnow(),
            attachments=attachments,
        )  # fmt: skip
        session.flush()
        return message.id, row.id if row else None


def api_ticket(client, token: str, number: int = 1) -> dict:  # type: ignore[no-untyped-def]
    response = client.get(f"/api/v1/tickets/{number}", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    return response.get_json()


def assert_crlf_only(data: bytes) -> None:
    """Every line on the wire ends in CRLF: no bare LF, no bare CR."""
    assert data.count(b"\n") == data.count(b"\r\n")
    assert data.count(b"\r") == data.count(b"\r\n")
    assert data.endswith(b"\r\n")


def header_names(data: bytes) -> list[str]:
    head = data.split(b"\r\n\r\n", 1)[0]
    return [
        line.split(b":", 1)[0].decode().lower()
        for line in head.split(b"\r\n")
        if line and not line[:1].isspace()
    ]


# --- 1. Headers of the acknowledgement and of an agent reply ----------------


def test_acknowledgement_is_delivered_with_threading_headers(
    gateway, engine, relay, relay_settings, client, make_user
):
    gateway.send(
        customer_mail(
            "<m1@customer.example>", cc=f"Bob <{CC}>", headers="References: <root@customer.example>"
        ),
        mail_from=SENDER,
    )
    assert relay.messages == []  # nothing leaves before the worker runs
    clock = Clock()
    assert deliver(make_worker(engine, relay_settings, clock)) == 1

    [(mail_from, rcpts, msg, data)] = received(relay)
    assert mail_from == QUEUE_ADDRESS
    assert rcpts == [SENDER]  # the acknowledgement goes to the requester only
    sender = msg["From"].addresses[0]
    assert (sender.display_name, sender.addr_spec) == ("Support (Help desk)", QUEUE_ADDRESS)
    assert verify_message_id(SECRET, msg["Message-ID"]) == 1
    assert msg["In-Reply-To"] == "<m1@customer.example>"
    assert msg["References"].split() == ["<root@customer.example>", "<m1@customer.example>"]
    assert msg["Subject"] == "Re: [HD#1] Printer broken"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["X-Helpdesk-Loop"] == "example.com"
    assert msg["Date"] is not None
    assert msg.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in msg.iter_parts()] == ["text/plain", "text/html"]
    assert "HD#1" in msg.get_body(("plain",)).get_content()
    assert "<strong>HD#1</strong>" in msg.get_body(("html",)).get_content()
    assert_crlf_only(data)

    [row] = outbox(engine)
    assert (row.purpose, row.state, row.attempts, row.last_error) == (
        "acknowledgement", "sent", 1, ""
    )  # fmt: skip
    assert row.sent_at == clock.now
    outbound = [m for m in messages(engine) if m.kind == "outbound"]
    assert [m.message_id for m in outbound] == [msg["Message-ID"]]
    assert row.message_id == outbound[0].id

    token = make_user(AGENT, "agent", ["help-desk"])
    shown = api_ticket(client, token)["messages"]
    assert [m["kind"] for m in shown] == ["inbound", "outbound"]
    assert shown[1]["message_id"] == msg["Message-ID"]
    assert shown[1]["delivery"]["state"] == "sent"
    assert shown[1]["delivery"]["attempts"] == 1
    assert shown[0]["delivery"] is None


def test_agent_reply_goes_to_requester_and_ccs_without_auto_headers(
    gateway, engine, relay, relay_settings, client, make_user
):
    gateway.send(
        customer_mail(
            "<m1@customer.example>", cc=f"Bob <{CC}>", headers="References: <root@customer.example>"
        ),
        mail_from=SENDER,
    )
    clock = Clock()
    worker = make_worker(engine, relay_settings, clock)
    deliver(worker)
    [(_, _, ack, _)] = received(relay)

    message_id, row_id = agent_reply(engine, relay_settings, text="Please restart the printer.")
    assert row_id is not None
    clock.catch_up()
    assert deliver(worker) == 1
    assert len(relay.messages) == 2
    mail_from, rcpts, msg, data = received(relay)[1]

    assert mail_from == QUEUE_ADDRESS
    assert sorted(rcpts) == sorted([SENDER, CC])
    assert [a.addr_spec for a in msg["To"].addresses] == [SENDER]
    assert [a.addr_spec for a in msg["Cc"].addresses] == [CC]
    sender = msg["From"].addresses[0]
    assert (sender.display_name, sender.addr_spec) == ("Dana Agent (Help desk)", QUEUE_ADDRESS)
    assert verify_message_id(SECRET, msg["Message-ID"]) == 1
    assert msg["Message-ID"] != ack["Message-ID"]
    # Threaded under the newest customer message, not under our acknowledgement.
    assert msg["In-Reply-To"] == "<m1@customer.example>"
    assert msg["References"].split() == ["<root@customer.example>", "<m1@customer.example>"]
    assert msg["Subject"] == "Re: [HD#1] Printer broken"
    names = header_names(data)
    for automatic in ("auto-submitted", "x-auto-response-suppress", "precedence"):
        assert automatic not in names
    assert msg["X-Helpdesk-Loop"] == "example.com"
    assert [part.get_content_type() for part in msg.iter_parts()] == ["text/plain", "text/html"]
    assert "Please restart the printer." in msg.get_body(("plain",)).get_content()
    assert "Please restart the printer." in msg.get_body(("html",)).get_content()
    assert_crlf_only(data)

    row = next(r for r in outbox(engine) if r.id == row_id)
    assert (row.purpose, row.state, row.rcpt_tos) == ("reply", "sent", [SENDER, CC])
    outbound = next(m for m in messages(engine) if m.id == message_id)
    assert outbound.kind == "outbound"
    assert outbound.message_id == msg["Message-ID"]
    assert (outbound.to_addresses, outbound.cc_addresses) == ([SENDER], [CC])
    with session_factory(engine)() as session:
        assert session.scalars(select(Ticket.status)).one() == "open"

    token = make_user(AGENT, "agent", ["help-desk"])
    shown = api_ticket(client, token)["messages"]
    assert [m["kind"] for m in shown] == ["inbound", "outbound", "outbound"]
    assert shown[2]["message_id"] == msg["Message-ID"]
    assert shown[2]["delivery"]["state"] == "sent"
    assert shown[2]["cc"] == [CC]


def test_agent_reply_with_attachments(gateway, engine, relay, relay_settings, client, make_user):
    gateway.send(customer_mail("<m1@customer.example>"), mail_from=SENDER)
    pdf = b"%PDF-1.4\n% not really a PDF\n\x00\x01\x02\xff"
    notes = "Schritt 1: Gerät aus, dann warten.\n".encode()
    files = [("report.pdf", "application/pdf", pdf), ("Übersicht.txt", "text/plain", notes)]
    agent_reply(engine, relay_settings, text="Instructions attached.", attachments=files)
    assert deliver(make_worker(engine, relay_settings, Clock())) == 2
    [(_, _, msg, data)] = [m for m in received(relay) if "auto-submitted" not in header_names(m[3])]

    assert msg.get_content_type() == "multipart/mixed"
    assert "Instructions attached." in msg.get_body(("plain",)).get_content()
    files = {part.get_filename(): part for part in msg.iter_attachments()}
    assert sorted(files) == ["report.pdf", "Übersicht.txt"]
    assert files["report.pdf"].get_content_type() == "application/pdf"
    assert files["report.pdf"].get_content() == pdf
    assert files["Übersicht.txt"].get_content_type() == "text/plain"
    assert files["Übersicht.txt"].get_payload(decode=True) == notes
    assert_crlf_only(data)

    # The thread shows what was sent.
    token = make_user(AGENT, "agent", ["help-desk"])
    shown = api_ticket(client, token)["messages"][-1]
    assert shown["kind"] == "outbound"
    assert [(a["filename"], a["content_type"], a["size"]) for a in shown["attachments"]] == [
        ("report.pdf", "application/pdf", len(pdf)),
        ("Übersicht.txt", "text/plain", len(notes)),
    ]
    assert shown["attachments"][0]["sha256"] == hashlib.sha256(pdf).hexdigest()


# --- 2. and 3. Temporary and permanent failures -----------------------------


def test_451_is_retried_after_backoff_and_delivered_once(gateway, engine, relay, relay_settings):
    gateway.send(customer_mail("<m1@customer.example>"), mail_from=SENDER)
    relay.handler.replies.append("451 4.3.0 busy")
    clock = Clock()
    worker = make_worker(engine, relay_settings, clock)

    assert worker.run_once() == 1
    [row] = outbox(engine)
    assert (row.state, row.attempts) == ("queued", 1)
    assert row.next_attempt_at > clock.now
    assert "451" in row.last_error and "busy" in row.last_error
    assert relay.messages == []

    assert worker.run_once() == 0  # not due yet
    clock.move_past(row.next_attempt_at)
    assert deliver(worker) == 1
    assert len(relay.messages) == 1
    [row] = outbox(engine)
    assert (row.state, row.attempts) == ("sent", 2)

    clock.advance(timedelta(days=1))
    assert deliver(worker) == 0
    assert len(relay.messages) == 1


def test_550_fails_permanently_and_agents_see_it(
    gateway, engine, relay, relay_settings, client, make_user
):
    gateway.send(customer_mail("<m1@customer.example>"), mail_from=SENDER)
    deliver(make_worker(engine, relay_settings, Clock()))
    agent_reply(engine, relay_settings)
    relay.handler.replies.append("550 5.1.1 mailbox unavailable")
    clock = Clock()
    worker = make_worker(engine, relay_settings, clock)

    assert worker.run_once() == 1
    row = outbox(engine, "reply")[0]
    assert (row.state, row.attempts) == ("failed", 1)
    assert "550" in row.last_error and "mailbox unavailable" in row.last_error
    clock.advance(timedelta(days=2))
    assert deliver(worker) == 0
    assert outbox(engine, "reply")[0].attempts == 1
    assert len(relay.messages) == 1  # only the acknowledgement

    token = make_user(AGENT, "agent", ["help-desk"])
    shown = api_ticket(client, token)["messages"]
    delivery = shown[-1]["delivery"]
    assert shown[-1]["kind"] == "outbound"
    assert delivery["state"] == "failed"
    assert "550 5.1.1 mailbox unavailable" in delivery["last_error"]
    assert shown[1]["delivery"]["state"] == "sent"


# --- 4. A dead relay, and a crashed worker ----------------------------------


def test_relay_down_then_up_delivers_everything_once(gateway, settings, engine):
    senders = [f"customer{i}@customer.example" for i in range(3)]
    for i, sender in enumerate(senders):
        gateway.send(customer_mail(f"<m{i}@customer.example>", sender=sender), mail_from=sender)
    port = free_port()
    down = replace(settings, smtp_relay=f"127.0.0.1:{port}")
    clock = Clock()

    assert make_worker(engine, down, clock).run_once() == 3
    rows = outbox(engine)
    assert [(r.state, r.attempts) for r in rows] == [("queued", 1)] * 3
    for row in rows:
        assert "relay unreachable" in row.last_error
        assert row.next_attempt_at > clock.now

    relay = start_relay(port)
    try:
        worker = make_worker(engine, down, clock)
        assert worker.run_once() == 0  # backoff not over yet
        assert relay.messages == []
        clock.move_past(max(r.next_attempt_at for r in rows))
        assert deliver(worker) == 3
        clock.advance(timedelta(days=1))
        assert deliver(worker) == 0
        got = sorted(rcpts[0] for _, rcpts, _ in relay.messages)
    finally:
        relay.controller.stop()
    assert got == sorted(senders)
    assert [(r.state, r.attempts) for r in outbox(engine)] == [("sent", 2)] * 3


def test_row_of_a_crashed_worker_is_taken_over_after_the_lease(
    gateway, engine, relay, relay_settings
):
    gateway.send(customer_mail("<m1@customer.example>"), mail_from=SENDER)
    clock = Clock()
    # A worker claims the row, commits, and dies before sending or recording.
    with session_factory(engine, write=True)() as session, session.begin():
        claimed = [row.id for row in claim_due(session, now=clock())]
    assert len(claimed) == 1
    [row] = outbox(engine)
    assert (row.state, row.attempts) == ("sending", 1)

    other = make_worker(engine, relay_settings, clock)
    assert other.run_once() == 0
    clock.advance(LEASE - timedelta(seconds=1))
    assert other.run_once() == 0
    assert relay.messages == []
    clock.advance(timedelta(seconds=2))
    assert deliver(other) == 1
    assert len(relay.messages) == 1
    [row] = outbox(engine)
    assert (row.state, row.attempts) == ("sent", 2)


# --- Relay quirks: a round that outlasts its lease, refused recipients -----


class HookedSink(SinkHandler):
    """The test sink; during the first DATA it runs ``hook`` (in a thread) before answering."""

    def __init__(self, hook: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.hook = hook

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        hook, self.hook = self.hook, None
        if hook is not None:
            await asyncio.to_thread(hook)
        return await super().handle_DATA(server, session, envelope)


class RefusingSink(SinkHandler):
    """The test sink, refusing the given recipients at RCPT with the given reply."""

    def __init__(self, refuse: dict[str, str]) -> None:
        super().__init__()
        self.refuse = refuse

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"


@contextlib.contextmanager
def sink(handler: SinkHandler) -> Iterator[Relay]:
    from aiosmtpd.controller import Controller

    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield Relay("127.0.0.1", controller.port, handler, controller)
    finally:
        controller.stop()


def queue_replies(engine: Engine, settings: Settings, n: int, number: int = 1) -> None:
    with writing_sessions(engine, settings)() as session, session.begin():
        agent = users.add_or_update(
            session, AGENT, role="agent", queue_slugs=["help-desk"], now=utcnow()
        )
        ticket = lifecycle.by_number(session, number)
        for i in range(n):
            reply(session, ticket, actor=agent, text=f"Reply {i}", settings=settings, now=utcnow())


def test_a_round_outlasting_its_lease_leaves_the_rest_to_the_new_claimer(gateway, settings, engine):
    gateway.send(customer_mail("<m1@customer.example>"), mail_from=SENDER)
    queue_replies(engine, settings, 4)
    clock = Clock()
    taken_over: list[int] = []
    handler = HookedSink()
    with sink(handler) as slow:
        relayed = replace(settings, smtp_relay=slow.address)
        first = make_worker(engine, relayed, clock, batch=10)
        second = make_worker(engine, relayed, clock, batch=10)

        def relay_stalls_past_the_lease() -> None:
            # The first worker's DATA hangs until its lease is over; meanwhile
            # a second worker claims the rows that now look abandoned.
            clock.advance(LEASE + timedelta(seconds=1))
            taken_over.append(second.run_once())

        handler.hook = relay_stalls_past_the_lease
        assert first.run_once() == 1  # the mail in flight, then it stops
        assert taken_over == [5]
        seen = Counter(msg["Message-ID"] for _, _, msg, _ in received(slow))

    ack = next(m.message_id for m in messages(engine) if "acknowledgement" in m.flags)
    assert len(seen) == 5
    # The mail in flight when the lease ran out goes twice (at-least-once); no other does.
    assert seen.pop(ack) == 2
    assert set(seen.values()) == {1}
    assert {r.state for r in outbox(engine)} == {"sent"}


def test_a_late_failure_does_not_requeue_a_mail_another_worker_sent(gateway, settings, engine):
    gateway.send(customer_mail("<m1@customer.example>"), mail_from=SENDER)
    clock = Clock()
    handler = HookedSink()
    with sink(handler) as slow:
        relayed = replace(settings, smtp_relay=slow.address)
        first = make_worker(engine, relayed, clock)
        second = make_worker(engine, relayed, clock)

        def taken_over_then_busy() -> None:
            clock.advance(LEASE + timedelta(seconds=1))
            assert second.run_once() == 1
            handler.replies.append("451 4.3.0 busy")  # for the first worker's DATA

        handler.hook = taken_over_then_busy
        assert first.run_once() == 1
        [row] = outbox(engine)
        assert row.state == "sent"
        clock.advance(timedelta(days=1))
        assert deliver(first) == 0
        assert len(slow.messages) == 1


def test_a_recipient_refused_at_rcpt_does_not_stop_the_others(
    gateway, settings, engine, client, make_user
):
    gateway.send(customer_mail("<m1@customer.example>", cc=CC), mail_from=SENDER)
    with sink(RefusingSink({CC: "550 5.1.1 no such user"})) as picky:
        relayed = replace(settings, smtp_relay=picky.address)
        clock = Clock()
        deliver(make_worker(engine, relayed, clock))
        agent_reply(engine, relayed)
        clock.catch_up()
        deliver(make_worker(engine, relayed, clock))
        assert [rcpts for _, rcpts, _ in picky.messages] == [[SENDER], [SENDER]]

    row = outbox(engine, "reply")[0]
    assert row.state == "sent"
    assert CC in row.last_error and "550 5.1.1 no such user" in row.last_error
    token = make_user(AGENT, "agent", ["help-desk"])
    delivery = api_ticket(client, token)["messages"][-1]["delivery"]
    assert delivery["state"] == "sent"
    assert CC in delivery["last_error"]


def test_every_recipient_refused_permanently_fails_the_mail(gateway, settings, engine):
    gateway.send(customer_mail("<m1@customer.example>"), mail_from=SENDER)
    with sink(RefusingSink({SENDER: "550 5.1.1 no such user"})) as picky:
        clock = Clock()
        worker = make_worker(engine, replace(settings, smtp_relay=picky.address), clock)
        assert worker.run_once() == 1
        clock.advance(timedelta(days=1))
        assert deliver(worker) == 0
        assert picky.messages == []
    [row] = outbox(engine)
    assert (row.state, row.attempts) == ("failed", 1)
    assert "550 5.1.1 no such user" in row.last_error


# --- 5. Header injection ----------------------------------------------------


def _set(engine: Engine, model: type, ident: int, **values: object) -> None:
    """Change a row directly, as a buggy admin edit would."""
    with session_factory(engine, write=True)() as session, session.begin():
        obj = session.get(model, ident)
        for name, value in values.items():
            setattr(obj, name, value)


def _agent_id(engine: Engine) -> int:
    with session_factory(engine, write=True)() as session, session.begin():
        agent = users.add_or_update(
            session, AGENT, role="agent", queue_slugs=["help-desk"], now=utcnow()
        )
        return agent.id


def _reply_refused(engine: Engine, settings: Settings) -> None:
    """The reply service refuses; what the transaction holds afterwards is committed."""
    with writing_sessions(engine, settings)() as session, session.begin():
        ticket = lifecycle.by_number(session, 1)
        agent = session.scalars(select(User).where(User.email == AGENT)).one()
        with pytest.raises(HeaderInjection):
            reply(session, ticket, actor=agent, text="Hello", settings=settings, now=utcnow())


@pytest.mark.parametrize("name", ["Eve\r\nBcc: evil@x.example", "Eve\nBcc: evil@x.example"])
def test_display_name_with_newline_is_refused(gateway, engine, relay, relay_settings, name):
    gateway.send(customer_mail("<m1@customer.example>"), mail_from=SENDER)
    _set(engine, User, _agent_id(engine), name=name)
    _reply_refused(engine, relay_settings)
    assert outbox(engine, "reply") == []
    assert [m.kind for m in messages(engine)] == ["inbound", "outbound"]
    deliver(make_worker(engine, relay_settings, Clock()))
    assert all("evil" not in " ".join(rcpts) for _, rcpts, _ in relay.messages)
    assert len(relay.messages) == 1  # the acknowledgement only


@pytest.mark.parametrize(
    "subject", ["Printer\r\nBcc: evil@x.example", "Printer\nBcc: evil@x.example", "Printer\rX: y"]
)
def test_ticket_subject_with_newline_is_refused(gateway, engine, relay_settings, subject):
    gateway.send(customer_mail("<m1@customer.example>"), mail_from=SENDER)
    _agent_id(engine)
    with session_factory(engine)() as session:
        ticket_id = session.scalars(select(Ticket.id)).one()
    _set(engine, Ticket, ticket_id, subject=subject)
    _reply_refused(engine, relay_settings)
    assert outbox(engine, "reply") == []
    assert [m.kind for m in messages(engine)] == ["inbound", "outbound"]


@pytest.mark.parametrize("encoded", ["hi=0D=0ABcc:_evil@x", "hi=0ABcc:_evil@x", "hi=0DBcc:_evil@x"])
def test_encoded_newline_in_subject_injects_nothing(
    gateway, engine, relay, relay_settings, encoded
):
    gateway.send(
        customer_mail("<m1@customer.example>", subject=f"=?utf-8?q?{encoded}?="), mail_from=SENDER
    )
    assert deliver(make_worker(engine, relay_settings, Clock())) == 1
    [(_, rcpts, msg, data)] = received(relay)
    assert rcpts == [SENDER]
    assert "bcc" not in header_names(data)
    assert msg["Bcc"] is None
    assert "\n" not in msg["Subject"] and "\r" not in msg["Subject"]
    assert msg["Subject"].startswith("Re: [HD#1] hi")
    assert "evil@x" in msg["Subject"]  # kept as text of the subject, harmless there
    assert_crlf_only(data)


# --- 6. Suppressed (bouncing) addresses -------------------------------------


def _bouncing(engine: Engine, *addresses: str) -> None:
    with session_factory(engine, write=True)() as session, session.begin():
        for contact in session.scalars(select(Contact).where(Contact.email.in_(addresses))):
            contact.bouncing_since = utcnow()


def test_bouncing_cc_is_skipped_and_the_others_still_get_the_reply(
    gateway, engine, relay, relay_settings
):
    gateway.send(customer_mail("<m1@customer.example>", cc=CC), mail_from=SENDER)
    _bouncing(engine, CC)
    message_id, row_id = agent_reply(engine, relay_settings)
    assert row_id is not None
    deliver(make_worker(engine, relay_settings, Clock()))

    [(_, rcpts, msg, _)] = [m for m in received(relay) if m[2]["Auto-Submitted"] is None]
    assert rcpts == [SENDER]
    assert msg["Cc"] is None
    outbound = next(m for m in messages(engine) if m.id == message_id)
    assert "suppressed" in outbound.flags
    assert f"skipped:{CC}" in outbound.flags
    assert outbound.cc_addresses == []
    assert outbox(engine, "reply")[0].rcpt_tos == [SENDER]


def test_reply_to_only_bouncing_addresses_queues_nothing(gateway, engine, relay, relay_settings):
    gateway.send(customer_mail("<m1@customer.example>", cc=CC), mail_from=SENDER)
    deliver(make_worker(engine, relay_settings, Clock()))
    _bouncing(engine, SENDER, CC)
    message_id, row_id = agent_reply(engine, relay_settings)
    assert row_id is None
    assert outbox(engine, "reply") == []
    outbound = next(m for m in messages(engine) if m.id == message_id)
    assert {"suppressed", f"skipped:{SENDER}", f"skipped:{CC}"} <= set(outbound.flags)
    assert deliver(make_worker(engine, relay_settings, Clock())) == 0
    assert len(relay.messages) == 1  # the acknowledgement, before the bounce


def test_bouncing_requester_gets_no_acknowledgement(gateway, engine, relay, relay_settings):
    gateway.send(customer_mail("<m1@customer.example>"), mail_from=SENDER)
    _bouncing(engine, SENDER)
    # A new ticket from the same (now bouncing) address, past the acknowledgement window.
    with session_factory(engine, write=True)() as session, session.begin():
        contact = session.scalars(select(Contact).where(Contact.email == SENDER)).one()
        contact.last_acknowledged_at = utcnow() - timedelta(days=1)
    gateway.send(customer_mail("<m2@customer.example>", subject="Other"), mail_from=SENDER)
    assert count(engine, Ticket) == 2
    assert len(outbox(engine, "acknowledgement")) == 1
    second = messages(engine, 2)
    assert [m.kind for m in second] == ["inbound", "outbound"]
    assert f"skipped:{SENDER}" in second[1].flags


# --- 8. The customer answers the acknowledgement ----------------------------


def test_answer_to_the_acknowledgement_lands_in_the_same_ticket(
    gateway, engine, relay, relay_settings
):
    gateway.send(customer_mail("<m1@customer.example>"), mail_from=SENDER)
    deliver(make_worker(engine, relay_settings, Clock()))
    [(_, _, ack, _)] = received(relay)

    answer = (
        f"From: Alice Example <{SENDER}>\r\n"
        f"To: {ack['From']}\r\n"
        f"Subject: Re: {ack['Subject']}\r\n"
        "Message-ID: <m2@customer.example>\r\n"
        f"In-Reply-To: {ack['Message-ID']}\r\n"
        f"References: {ack['References']} {ack['Message-ID']}\r\n"
        "Date: Thu, 26 Nov 2026 10:00:00 +0100\r\n"
        "\r\n"
        "It still does not work.\r\n"
    ).encode()
    assert gateway.send(answer, mail_from=SENDER) == {}

    assert count(engine, Ticket) == 1
    thread = messages(engine, 1)
    assert [m.kind for m in thread] == ["inbound", "outbound", "inbound"]
    assert thread[2].message_id == "<m2@customer.example>"
    assert thread[2].text_body.strip() == "It still does not work."
    assert len(outbox(engine, "acknowledgement")) == 1
    assert deliver(make_worker(engine, relay_settings, Clock())) == 0
    assert len(relay.messages) == 1


def test_answer_to_an_agent_reply_from_a_cc_lands_in_the_same_ticket(
    gateway, engine, relay, relay_settings
):
    gateway.send(customer_mail("<m1@customer.example>", cc=CC), mail_from=SENDER)
    agent_reply(engine, relay_settings)
    deliver(make_worker(engine, relay_settings, Clock()))
    [(_, _, sent, _)] = [m for m in received(relay, CC)]
    answer = (
        f"From: Bob <{CC}>\r\n"
        f"To: {QUEUE_ADDRESS}\r\n"
        "Subject: Re: something else entirely\r\n"
        "Message-ID: <bob1@customer.example>\r\n"
        f"In-Reply-To: {sent['Message-ID']}\r\n"
        f"References: {sent['References']} {sent['Message-ID']}\r\n"
        "\r\n"
        "Same here.\r\n"
    ).encode()
    gateway.send(answer, mail_from=CC)
    assert count(engine, Ticket) == 1
    assert [m.kind for m in messages(engine, 1)] == ["inbound", "outbound", "outbound", "inbound"]


# --- 9. Several workers -----------------------------------------------------


def test_two_workers_deliver_each_mail_exactly_once(gateway, engine, relay, relay_settings):
    gateway.send(customer_mail("<m1@customer.example>"), mail_from=SENDER)
    queue_replies(engine, relay_settings, 39)
    expected = {m.message_id for m in messages(engine) if m.kind == "outbound"}
    assert len(expected) == len(outbox(engine)) == 40

    clock = Clock()
    workers = [make_worker(engine, relay_settings, clock, batch=3) for _ in range(2)]
    start = threading.Barrier(len(workers))

    def drain(worker: OutboxWorker) -> int:
        start.wait(timeout=30)
        return deliver(worker, rounds=40)

    with ThreadPoolExecutor(max_workers=len(workers)) as pool:
        attempted = [f.result(timeout=120) for f in [pool.submit(drain, w) for w in workers]]

    assert sum(attempted) == 40
    seen = Counter(msg["Message-ID"] for _, _, msg, _ in received(relay))
    assert set(seen) == expected
    assert set(seen.values()) == {1}
    assert {(r.state, r.attempts) for r in outbox(engine)} == {("sent", 1)}
