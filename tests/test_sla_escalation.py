"""SLA escalation under a controllable clock, on SQLite and PostgreSQL.

The worker's job (``Scheduler.run_once`` with a fixed clock, or ``escalate``
itself) is run at chosen instants: past 80% of a target a warning goes to the
assignee, or to the queue's agents when nobody is assigned; past the target a
breach also reaches the managers; each is written to the ticket's history and
sent once, however often the job runs. The ticket page and the API then show
the breach.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.accounts import users
from helpdesk.intake.receive import Envelope, receive
from helpdesk.models import OutboxMail, SlaCalendar, SlaPolicy, Ticket, TicketEvent, TicketSla, User
from helpdesk.scheduler import Scheduler
from helpdesk.sla.escalation import escalate
from helpdesk.subscribers import writing_sessions
from helpdesk.tickets import conversation, lifecycle, queues
from tests.conftest import outbox_bytes

MONDAY = datetime(2026, 5, 18, tzinfo=UTC)  # the seeded calendar: Mon-Fri 09-17 UTC


def at(hour: int, minute: int = 0, day: int = 0) -> datetime:
    return MONDAY + timedelta(days=day, hours=hour, minutes=minute)


def mail(number: int, sender: str, subject: str) -> bytes:
    return (
        f"From: {sender}\r\nTo: help-desk@example.com\r\nSubject: {subject}\r\n"
        f"Message-ID: <esc{number}@customer.example>\r\n\r\nHello {number}.\r\n"
    ).encode()


@pytest.fixture
def desk(engine, settings, make_user):  # type: ignore[no-untyped-def]
    """A help-desk policy (first response 100, next response 60, resolution 480
    business minutes), two agents of the queue, one of another queue, two
    managers (one inactive) and an admin."""
    token = make_user("ann@example.com", "agent", ["help-desk"])  # with a password: signs in
    with writing_sessions(engine, settings)() as session, session.begin():
        calendar = session.scalars(select(SlaCalendar)).one()  # seeded, UTC office hours
        session.add(
            SlaPolicy(
                name="Help desk",
                position=10,
                queue_id=queues.by_slug(session, "help-desk").id,
                calendar_id=calendar.id,
                first_response_minutes=100,
                next_response_minutes=60,
                resolution_minutes=480,
                created_at=MONDAY,
            )
        )
        for email, role, slugs in [
            ("bert@example.com", "agent", ["help-desk"]),
            ("cleo@example.com", "agent", ["service-desk"]),
            ("max@example.com", "manager", None),
            ("old-boss@example.com", "manager", None),
            ("root@example.com", "admin", None),
        ]:
            users.add_or_update(session, email, role=role, queue_slugs=slugs, now=MONDAY)
        session.scalars(
            select(User).where(User.email == "old-boss@example.com")
        ).one().active = False
    return {"token": token, "sessions": writing_sessions(engine, settings)}


def new_ticket(settings, sessions, number: int, now: datetime, assignee: str | None = None) -> int:  # type: ignore[no-untyped-def]
    with sessions() as session, session.begin():
        sender = f"customer{number}@customer.example"
        result = receive(
            session, mail(number, sender, f"Case {number}"),
            Envelope(sender, ("help-desk@example.com",)), settings=settings, now=now,
        )  # fmt: skip
        if assignee:
            ticket = by_number(session, result.ticket_number)
            person = session.scalars(select(User).where(User.email == assignee)).one()
            lifecycle.assign(session, ticket, person, actor=person, now=now)
        return result.ticket_number


def by_number(session: Session, number: int) -> Ticket:
    return session.scalars(select(Ticket).where(Ticket.number == number)).one()


def escalations(session: Session, number: int) -> list[tuple[str, str, str]]:
    """(purpose, recipient, subject) of the escalation mails of a ticket, in order."""
    ticket = by_number(session, number)
    rows = session.scalars(
        select(OutboxMail)
        .where(OutboxMail.ticket_id == ticket.id, OutboxMail.purpose.like("escalation:%"))
        .order_by(OutboxMail.id)
    )
    out = []
    for row in rows:
        content = outbox_bytes(row)
        subject = re.search(rb"^Subject: (.*)$", content, re.M).group(1).decode().strip()
        out += [(row.purpose, rcpt, subject) for rcpt in row.rcpt_tos]
    return out


def history(session: Session, number: int) -> list[tuple[str, str, str]]:
    ticket = by_number(session, number)
    rows = session.scalars(
        select(TicketEvent)
        .where(TicketEvent.ticket_id == ticket.id, TicketEvent.kind.like("sla_%"))
        .order_by(TicketEvent.id)
    )
    return [(e.kind, e.old_value, e.new_value) for e in rows]


def test_warning_then_breach_each_once(desk, settings, session, client):
    sessions = desk["sessions"]
    unassigned = new_ticket(settings, sessions, 1, at(9))
    assigned = new_ticket(settings, sessions, 2, at(9), assignee="bert@example.com")
    now = {"value": at(10, 19)}
    scheduler = Scheduler(sessions, settings, clock=lambda: now["value"])

    scheduler.run_once()  # 79 of 100 minutes: nothing yet
    assert escalations(session, unassigned) == escalations(session, assigned) == []

    now["value"] = at(10, 25)  # past 80%
    assert scheduler.run_once() == 2
    session.expire_all()
    warning = "escalation:warning"
    assert [(p, r) for p, r, _ in escalations(session, unassigned)] == [
        (warning, "ann@example.com"),  # the queue's agents
        (warning, "bert@example.com"),
    ]
    assert [(p, r) for p, r, _ in escalations(session, assigned)] == [(warning, "bert@example.com")]
    subject = escalations(session, assigned)[0][2]
    assert subject.startswith("SLA due soon: First response") and "[HD#2]" in subject
    due = at(10, 40).isoformat()
    assert history(session, assigned) == [("sla_warning", "First response", due)]

    for minute in (26, 30, 39):  # the job runs again and again: nothing new
        now["value"] = at(10, minute)
        scheduler.run_once()
    session.expire_all()
    assert len(escalations(session, unassigned)) == 2
    assert len(escalations(session, assigned)) == 1

    now["value"] = at(10, 41)  # past the target
    scheduler.run_once()
    session.expire_all()
    breach = "escalation:breach"
    assert [(p, r) for p, r, _ in escalations(session, unassigned)][2:] == [
        (breach, "ann@example.com"),
        (breach, "bert@example.com"),
        (breach, "max@example.com"),  # the active managers; never an inactive one
    ]
    assert [(p, r) for p, r, _ in escalations(session, assigned)][1:] == [
        (breach, "bert@example.com"),
        (breach, "max@example.com"),
    ]
    assert escalations(session, assigned)[1][2].startswith("SLA breached: First response")
    assert history(session, assigned) == [
        ("sla_warning", "First response", due),
        ("sla_breach", "First response", due),
    ]
    for minute in (42, 50, 59):
        now["value"] = at(10, minute)
        scheduler.run_once()
    session.expire_all()
    assert len(escalations(session, unassigned)) == 5
    assert len(escalations(session, assigned)) == 3
    assert len(history(session, assigned)) == 2

    # The page and the API show the breach.
    row = session.get(TicketSla, by_number(session, assigned).id)
    assert (row.state, row.breached, row.first_response_breached_at) == (
        "breached",
        True,
        at(10, 40),
    )
    shown = client.get("/api/v1/tickets/2", headers={"Authorization": f"Bearer {desk['token']}"})
    assert shown.get_json()["sla"]["breached"] is True
    assert shown.get_json()["sla"]["state"] == "breached"
    sign_in(client, "ann@example.com")
    page = client.get("/tickets/2")
    assert page.status_code == 200
    assert b"sla-breached" in page.data and b"breached 2026-05-18 10:40" in page.data
    listing = client.get("/queues/help-desk?sla=breached")
    assert b"Case 2" in listing.data and b"Case 1" in listing.data


def test_a_reply_in_time_ends_the_warnings_and_resolution_has_its_own(desk, settings, session):
    sessions = desk["sessions"]
    number = new_ticket(settings, sessions, 1, at(9), assignee="ann@example.com")
    with sessions() as write, write.begin():
        assert escalate(write, now=at(10, 30)) == 1
    with sessions() as write, write.begin():
        ticket = by_number(write, number)
        ann = write.scalars(select(User).where(User.email == "ann@example.com")).one()
        conversation.reply(
            write, ticket, actor=ann, text="On it", settings=settings, now=at(10, 35)
        )
    with sessions() as write, write.begin():
        escalate(write, now=at(11))  # no breach: the clock stopped in time
    session.expire_all()
    assert [k for k, _, _ in history(session, number)] == ["sla_warning"]
    row = session.get(TicketSla, by_number(session, number).id)
    assert row.next_check_at == at(15, 24)  # 80% of the 480-minute resolution clock
    with sessions() as write, write.begin():
        escalate(write, now=at(15, 30))
        escalate(write, now=at(15, 31))
    session.expire_all()
    assert history(session, number)[1:] == [("sla_warning", "Resolution", at(17).isoformat())]
    assert [r for _, r, _ in escalations(session, number)] == ["ann@example.com"] * 2


def test_each_next_response_cycle_is_escalated_once(desk, settings, session):
    sessions = desk["sessions"]
    number = new_ticket(settings, sessions, 1, at(9), assignee="ann@example.com")
    sender = "customer1@customer.example"

    def customer_writes(n: int, now: datetime) -> None:
        with sessions() as write, write.begin():
            raw = mail(100 + n, sender, f"Re: [HD#{number}] Case 1")
            receive(
                write, raw, Envelope(sender, ("help-desk@example.com",)), settings=settings, now=now
            )

    def agent_replies(now: datetime) -> None:
        with sessions() as write, write.begin():
            ann = write.scalars(select(User).where(User.email == "ann@example.com")).one()
            conversation.reply(
                write, by_number(write, number), actor=ann, text="Ok", settings=settings, now=now
            )

    agent_replies(at(9, 10))
    customer_writes(1, at(11))
    for minute in (50, 55, 59):  # cycle 1: warned at 11:48
        with sessions() as write, write.begin():
            escalate(write, now=at(11, minute))
    agent_replies(at(11, 59))
    customer_writes(2, at(13))
    for minute in (50, 55):  # cycle 2: its own warning
        with sessions() as write, write.begin():
            escalate(write, now=at(13, minute))
    with sessions() as write, write.begin():
        escalate(write, now=at(14, 1))  # and its breach
        escalate(write, now=at(14, 5))
    session.expire_all()
    assert [(k, label) for k, label, _ in history(session, number)] == [
        ("sla_warning", "Next response"),
        ("sla_warning", "Next response"),
        ("sla_breach", "Next response"),
    ]
    row = session.get(TicketSla, by_number(session, number).id)
    assert row.next_response_breached_at == at(14)
    assert row.next_response_answered == 1


def test_a_move_to_another_queue_starts_the_escalations_afresh(desk, settings, session):
    """The policy is re-chosen from the ticket's start; its warnings are new ones."""
    sessions = desk["sessions"]
    number = new_ticket(settings, sessions, 1, at(9), assignee="ann@example.com")
    with sessions() as write, write.begin():
        escalate(write, now=at(10, 25))  # help-desk: warned at 10:20
    with sessions() as write, write.begin():
        cleo = write.scalars(select(User).where(User.email == "cleo@example.com")).one()
        service_desk = queues.by_slug(write, "service-desk")
        lifecycle.move(write, by_number(write, number), service_desk, actor=cleo, now=at(10, 30))
    session.expire_all()
    row = session.get(TicketSla, by_number(session, number).id)
    assert row.policy.name == "Default"  # 4 business hours from 09:00
    assert (row.first_response_due, row.escalations) == (at(13), [])
    for now in (at(12, 15), at(12, 20), at(13, 1), at(13, 30)):
        with sessions() as write, write.begin():
            escalate(write, now=now)
    session.expire_all()
    assert [(k, v) for k, _, v in history(session, number)] == [
        ("sla_warning", at(10, 40).isoformat()),
        ("sla_warning", at(13).isoformat()),
        ("sla_breach", at(13).isoformat()),
    ]
    assert [(p, r) for p, r, _ in escalations(session, number)] == [
        ("escalation:warning", "ann@example.com"),
        ("escalation:warning", "cleo@example.com"),  # unassigned by the move: the queue's agents
        ("escalation:breach", "cleo@example.com"),
        ("escalation:breach", "max@example.com"),
    ]


def test_a_breach_is_not_lost_when_the_ticket_changes_before_the_job_runs(desk, settings, session):
    """Regression: a refresh between the due time and the job's next run (here a
    customer's follow-up) moved the next check past the breach, so the breach was
    escalated only at the next threshold, hours later, or never."""
    sessions = desk["sessions"]
    number = new_ticket(settings, sessions, 1, at(9), assignee="ann@example.com")
    with sessions() as write, write.begin():
        escalate(write, now=at(10, 25))  # the warning
    with sessions() as write, write.begin():  # 10:45: past due, the job has not run since
        sender = "customer1@customer.example"
        raw = mail(2, sender, f"Re: [HD#{number}] Case 1")
        receive(
            write, raw, Envelope(sender, ("help-desk@example.com",)), settings=settings,
            now=at(10, 45),
        )  # fmt: skip
    with sessions() as write, write.begin():
        assert escalate(write, now=at(10, 46)) == 1
    with sessions() as write, write.begin():
        assert escalate(write, now=at(10, 47)) == 0  # handled: not again
    session.expire_all()
    assert [k for k, _, _ in history(session, number)] == ["sla_warning", "sla_breach"]
    row = session.get(TicketSla, by_number(session, number).id)
    assert row.next_check_at == at(15, 24)  # the resolution warning comes next


def test_a_broken_subject_does_not_stop_the_job(desk, settings, session, caplog):
    """Regression: a ticket subject with LF (only a direct database edit puts it
    there) made every run of the job fail, so no ticket was escalated any more.
    Its escalation is still recorded; only the mail is skipped, and logged."""
    sessions = desk["sessions"]
    broken = new_ticket(settings, sessions, 1, at(9), assignee="ann@example.com")
    fine = new_ticket(settings, sessions, 2, at(9), assignee="ann@example.com")
    with sessions() as write, write.begin():
        by_number(write, broken).subject = "Printer\nBcc: evil@x.example"
    scheduler = Scheduler(sessions, settings, clock=lambda: at(10, 25))
    assert scheduler.run_once() == 2
    session.expire_all()
    assert [k for k, _, _ in history(session, broken)] == ["sla_warning"]
    assert escalations(session, broken) == []
    assert [r for _, r, _ in escalations(session, fine)] == ["ann@example.com"]
    assert "escalation skipped" in caplog.text


def test_two_workers_at_once_escalate_each_clock_once(desk, settings, session, engine):
    """Several workers may run the job together: rows one locks, the others skip."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time; nothing runs concurrently")
    sessions = desk["sessions"]
    number = new_ticket(settings, sessions, 1, at(9), assignee="ann@example.com")
    with sessions() as first, first.begin():
        assert escalate(first, now=at(10, 25)) == 1
        with sessions() as second, second.begin():  # meanwhile, in another worker
            assert escalate(second, now=at(10, 25)) == 0
    with sessions() as later, later.begin():
        escalate(later, now=at(10, 26))
    session.expire_all()
    assert [k for k, _, _ in history(session, number)] == ["sla_warning"]
    assert len(escalations(session, number)) == 1


def sign_in(client, email: str, password: str = "password123"):  # type: ignore[no-untyped-def]
    page = client.get("/login").data
    token = re.search(rb'name="csrf_token"[^>]*value="([^"]+)"', page)
    assert token, "no CSRF token on the sign-in page"
    response = client.post(
        "/login", data={"email": email, "password": password, "csrf_token": token.group(1)}
    )
    assert response.status_code == 302
    return response
