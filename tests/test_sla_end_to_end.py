"""SLA clocks end to end under a controllable clock, on SQLite and PostgreSQL.

Mail goes through ``helpdesk.intake.receive`` and agents act through the
reply and triage services, each with a fixed ``now``; the stored
``TicketSla`` and the API's ``sla`` object are then checked. The business
calendar is the one ``helpdesk init`` seeds for ``HELPDESK_TIMEZONE``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.accounts import users
from helpdesk.intake.receive import Envelope, receive
from helpdesk.models import Message, SlaCalendar, SlaPolicy, Ticket, TicketSla, User
from helpdesk.settings import Settings
from helpdesk.sla import holidays
from helpdesk.sla import service as sla_service
from helpdesk.subscribers import writing_sessions
from helpdesk.tickets import conversation, lifecycle, queues

FIRST = datetime(2026, 1, 1, tzinfo=UTC)
COMPANY_DAY_ICS = (  # every 18 May since 2025 (a Monday in 2026)
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\n"
    b"UID:company-day@example.com\r\nDTSTART;VALUE=DATE:20250518\r\n"
    b"DTEND;VALUE=DATE:20250519\r\nRRULE:FREQ=YEARLY\r\nSUMMARY:Company day\r\n"
    b"END:VEVENT\r\nEND:VCALENDAR\r\n"
)


def local(zone: str, *args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone))


def mail(
    number: int, subject: str = "Printer on fire", *, headers: str = "", sender: str = "bob"
) -> bytes:
    return (
        f"From: Bob Customer <{sender}@customer.example>\r\n"
        "To: help-desk@example.com\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <m{number}@customer.example>\r\n"
        f"{headers}"
        "\r\n"
        f"Message {number}.\r\n"
    ).encode()


@dataclass
class Desk:
    """The database after ``helpdesk init`` in a time zone, with SLA policies and people."""

    engine: object
    settings: Settings
    token: str = ""  # the agent's API token

    def write(self) -> Session:
        return writing_sessions(self.engine, self.settings)()

    def receive(self, raw: bytes, now: datetime, sender: str = "bob@customer.example") -> int:
        with self.write() as session, session.begin():
            result = receive(
                session,
                raw,
                Envelope(sender, ("help-desk@example.com",)),
                settings=self.settings,
                now=now.astimezone(UTC),
            )
            assert result.ticket_number is not None, result
            return result.ticket_number

    def sla(self, number: int) -> TicketSla:
        with self.write() as session:
            row = session.get(TicketSla, ticket(session, number).id)
            assert row is not None
            session.expunge(row)
            return row


def make_desk(engine, settings: Settings, zone: str) -> Desk:  # type: ignore[no-untyped-def]
    """Seed the default calendar in ``zone``, a 2-business-hour help-desk policy,
    an agent of help-desk and service-desk, and a manager (no passwords: API only)."""
    desk = Desk(engine, replace(settings, timezone=zone))
    with desk.write() as session, session.begin():
        # The template database was seeded in UTC; seed again as `helpdesk init` in `zone`.
        for policy in session.scalars(select(SlaPolicy)):
            session.delete(policy)
        session.flush()
        for calendar in session.scalars(select(SlaCalendar)):
            session.delete(calendar)
        session.flush()
        sla_service.seed(session, timezone=zone, now=FIRST)
        sla_service.seed(session, timezone="UTC", now=FIRST)  # idempotent
        calendar = session.scalars(select(SlaCalendar)).one()
        assert calendar.timezone == zone
        assert calendar.weekly == [[[540, 1020]]] * 5 + [[], []]
        session.add(
            SlaPolicy(
                name="Help desk",
                position=10,
                queue_id=queues.by_slug(session, "help-desk").id,
                calendar_id=calendar.id,
                first_response_minutes=120,
                next_response_minutes=60,
                resolution_minutes=8 * 60,
                created_at=FIRST,
            )
        )
        worker = users.add_or_update(
            session, "agent@example.com", role="agent", queue_slugs=["help-desk", "service-desk"],
            now=FIRST,
        )  # fmt: skip
        users.add_or_update(session, "manager@example.com", role="manager", now=FIRST)
        desk.token = users.create_token(session, worker, now=FIRST)
    return desk


@pytest.fixture
def berlin(engine, settings) -> Desk:  # type: ignore[no-untyped-def]
    return make_desk(engine, settings, "Europe/Berlin")


def api_sla(client, token: str, number: int) -> dict:  # type: ignore[no-untyped-def]
    response = client.get(f"/api/v1/tickets/{number}", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    return response.get_json()["sla"]


def instant(text: str | None) -> datetime | None:
    """An API time: ISO 8601 that must carry its UTC offset."""
    if text is None:
        return None
    value = datetime.fromisoformat(text)
    assert value.utcoffset() is not None, text
    return value


def agent(session: Session, email: str = "agent@example.com") -> User:
    return session.scalars(select(User).where(User.email == email)).one()


def ticket(session: Session, number: int) -> Ticket:
    return session.scalars(select(Ticket).where(Ticket.number == number)).one()


# --- Friday 16:30 ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "received", "holiday", "due"),
    [
        # An ordinary weekend in Berlin.
        ("Europe/Berlin", (2026, 5, 15, 16, 30), None, (2026, 5, 18, 10, 30)),
        # Whit Monday, from the holidays package (Germany).
        ("Europe/Berlin", (2026, 5, 22, 16, 30), "country", (2026, 5, 26, 10, 30)),
        # A Monday holiday added as a single date, or imported from an iCalendar file.
        ("Europe/Berlin", (2026, 5, 15, 16, 30), date(2026, 5, 18), (2026, 5, 19, 10, 30)),
        ("Europe/Berlin", (2026, 5, 15, 16, 30), "ical", (2026, 5, 19, 10, 30)),
        # Over the weekend the clocks go forward (CET to CEST).
        ("Europe/Berlin", (2026, 3, 27, 16, 30), None, (2026, 3, 30, 10, 30)),
        # New York falls back (EDT to EST) over the weekend.
        ("America/New_York", (2026, 10, 30, 16, 30), None, (2026, 11, 2, 10, 30)),
        ("UTC", (2026, 5, 15, 16, 30), None, (2026, 5, 18, 10, 30)),
    ],
)
def test_friday_1630_with_two_business_hours_is_due_monday_1030(
    engine, settings, client, zone, received, holiday, due
):
    desk = make_desk(engine, settings, zone)
    token = desk.token
    if holiday is not None:
        with desk.write() as session, session.begin():
            calendar = session.scalars(select(SlaCalendar)).one()
            if holiday == "country":
                days = holidays.from_country("DE", None, [2026])
                assert date(2026, 5, 25) in {day for day, _name in days}  # Whit Monday
            elif holiday == "ical":
                days = holidays.from_ical(COMPANY_DAY_ICS, [2026])
                assert days == [(date(2026, 5, 18), "Company day")]
            else:
                days = [(holiday, "Company day")]
            assert holidays.add(session, calendar, days) >= 1
    number = desk.receive(mail(1), local(zone, *received))

    expected = local(zone, *due)
    row = desk.sla(number)
    assert row.first_response_due == expected
    assert row.due_at == expected  # the earliest running clock
    assert row.state == "running" and not row.breached
    shown = api_sla(client, token, number)
    assert instant(shown["first_response_due"]) == expected
    assert shown["policy"] == "Help desk"
    assert shown["state"] == "running" and shown["breached"] is False
    assert instant(shown["resolution_due"]) > expected


# --- What stops, pauses and restarts the clocks --------------------------------------


def test_an_agent_reply_stops_first_response_and_a_note_or_acknowledgement_does_not(berlin, client):
    token = berlin.token
    monday = lambda h, m=0: local("Europe/Berlin", 2026, 5, 18, h, m)  # noqa: E731
    number = berlin.receive(mail(1), monday(9))
    with berlin.write() as session, session.begin():
        kinds = [(m.kind, m.author_id) for m in ticket(session, number).messages]
        assert ("outbound", None) in kinds  # the automatic acknowledgement went out
        conversation.add_note(
            session,
            ticket(session, number),
            actor=agent(session),
            text="Looking",
            now=monday(9, 20),
        )
        sla_service.refresh(session, ticket(session, number), now=monday(9, 30))
    row = berlin.sla(number)
    assert row.first_response_at is None
    assert row.first_response_due == monday(11)

    # The customer's out-of-office answer to the acknowledgement is automated: no effect.
    robot = mail(2, "[HD#1] Out of office", headers="Auto-Submitted: auto-replied\r\n")
    berlin.receive(robot, monday(9, 40))
    assert berlin.sla(number).first_response_due == monday(11)

    with berlin.write() as session, session.begin():
        conversation.reply(
            session,
            ticket(session, number),
            actor=agent(session),
            text="Have you tried water?",
            settings=berlin.settings,
            now=monday(10, 15),
        )
    row = berlin.sla(number)
    assert row.first_response_at == monday(10, 15)
    assert row.first_response_minutes == 75
    assert row.first_response_breached_at is None
    shown = api_sla(client, token, number)
    assert shown["first_response_due"] is None
    assert instant(shown["first_response_at"]) == monday(10, 15)

    # The customer writes back: the next-response clock (60 business minutes) starts.
    berlin.receive(mail(3, "Re: [HD#1] Printer on fire"), monday(16, 30))
    row = berlin.sla(number)
    assert row.next_response_due == local("Europe/Berlin", 2026, 5, 19, 9, 30)
    assert instant(api_sla(client, token, number)["next_response_due"]) == row.next_response_due


def test_pending_pauses_the_clocks_until_the_customer_answers(berlin, client):
    token = berlin.token
    monday = lambda h, m=0: local("Europe/Berlin", 2026, 5, 18, h, m)  # noqa: E731
    number = berlin.receive(mail(1), monday(9))
    with berlin.write() as session, session.begin():
        lifecycle.update(
            session, ticket(session, number), status="pending", actor=agent(session), now=monday(10)
        )
    row = berlin.sla(number)
    assert row.state == "paused"
    assert row.due_at is None and row.next_check_at is None
    assert api_sla(client, token, number)["state"] == "paused"

    berlin.receive(mail(2, "Re: [HD#1] Printer on fire"), monday(14))
    with berlin.write() as session:
        assert ticket(session, number).status == "open"
    row = berlin.sla(number)
    assert row.state == "running"
    assert row.paused_minutes == 240
    assert row.first_response_due == monday(15)  # 60 minutes used, 60 left
    assert row.resolution_due == local("Europe/Berlin", 2026, 5, 19, 13)  # 420 left at 14:00


def test_reopening_resumes_the_resolution_clock(berlin):
    monday = lambda h, m=0: local("Europe/Berlin", 2026, 5, 18, h, m)  # noqa: E731
    number = berlin.receive(mail(1), monday(9))
    with berlin.write() as session, session.begin():
        lifecycle.update(
            session,
            ticket(session, number),
            status="resolved",
            actor=agent(session),
            now=monday(12),
        )
    row = berlin.sla(number)
    assert (row.resolved_at, row.resolution_minutes, row.state) == (monday(12), 180, "breached")
    assert row.first_response_breached_at == monday(11)  # never answered within 2 hours

    berlin.receive(mail(2, "Re: [HD#1] Printer on fire"), monday(16))
    row = berlin.sla(number)
    assert row.resolved_at is None and row.resolution_minutes is None
    assert row.resolution_due == local("Europe/Berlin", 2026, 5, 19, 13)  # 300 left at 16:00
    with berlin.write() as session, session.begin():
        tuesday = local("Europe/Berlin", 2026, 5, 19, 9, 30)
        lifecycle.update(
            session, ticket(session, number), status="resolved", actor=agent(session), now=tuesday
        )
        lifecycle.update(
            session,
            ticket(session, number),
            status="closed",
            actor=agent(session),
            now=tuesday + timedelta(days=2),
        )
    row = berlin.sla(number)
    assert row.resolved_at == local("Europe/Berlin", 2026, 5, 19, 9, 30)
    assert row.resolution_minutes == 180 + 60 + 30
    assert row.resolution_breached_at is None


def test_moving_to_another_queue_re_evaluates_from_the_start(berlin, client):
    token = berlin.token
    friday = lambda h, m=0: local("Europe/Berlin", 2026, 5, 15, h, m)  # noqa: E731
    with berlin.write() as session, session.begin():
        calendar = session.scalars(select(SlaCalendar)).one()
        session.add(
            SlaPolicy(
                name="Service desk, 30 calendar minutes",
                position=20,
                queue_id=queues.by_slug(session, "service-desk").id,
                calendar_id=calendar.id,
                first_response_minutes=30,
                first_response_business=False,
                resolution_minutes=None,
                created_at=FIRST,
            )
        )
    number = berlin.receive(mail(1), friday(16, 30))
    assert berlin.sla(number).first_response_due == local("Europe/Berlin", 2026, 5, 18, 10, 30)
    with berlin.write() as session, session.begin():
        service_desk = queues.by_slug(session, "service-desk")
        lifecycle.move(
            session, ticket(session, number), service_desk, actor=agent(session), now=friday(16, 50)
        )
    row = berlin.sla(number)
    assert row.first_response_due == friday(17)  # 30 minutes from the ticket's start
    assert row.resolution_due is None
    assert row.state == "running"  # 20 of 30 minutes gone; the warning comes at 16:54
    shown = api_sla(client, token, number)
    assert shown["policy"] == "Service desk, 30 calendar minutes"
    assert instant(shown["first_response_due"]) == friday(17)


def test_timeline_reads_only_customer_mail_agent_replies_and_status_changes(berlin):
    monday = lambda h, m=0: local("Europe/Berlin", 2026, 5, 18, h, m)  # noqa: E731
    number = berlin.receive(mail(1), monday(9))
    berlin.receive(
        mail(2, "[HD#1] Out of office", headers="Auto-Submitted: auto-replied\r\n"), monday(9, 5)
    )
    with berlin.write() as session, session.begin():
        current = ticket(session, number)
        conversation.add_note(
            session, current, actor=agent(session), text="note", now=monday(9, 10)
        )
        conversation.reply(
            session, current, actor=agent(session), text="Hello", settings=berlin.settings,
            now=monday(9, 20),
        )  # fmt: skip
        lifecycle.update(
            session, current, status="pending", actor=agent(session), now=monday(9, 30)
        )
        session.flush()
        events = sla_service.timeline(session, current)
        assert (
            len(session.scalars(select(Message).where(Message.ticket_id == current.id)).all()) == 5
        )
    assert [(e.at, e.kind, e.value) for e in events] == [
        (monday(9), "customer", ""),
        (monday(9, 20), "reply", ""),
        (monday(9, 20), "status", "open"),
        (monday(9, 30), "status", "pending"),
    ]


def test_a_priority_change_re_chooses_the_policy(berlin):
    monday = lambda h, m=0: local("Europe/Berlin", 2026, 5, 18, h, m)  # noqa: E731
    with berlin.write() as session, session.begin():
        calendar = session.scalars(select(SlaCalendar)).one()
        session.add(
            SlaPolicy(
                name="Urgent",
                position=1,
                priority="urgent",
                calendar_id=calendar.id,
                first_response_minutes=30,
                resolution_minutes=120,
                created_at=FIRST,
            )
        )
    number = berlin.receive(mail(1), monday(9))
    assert berlin.sla(number).first_response_due == monday(11)
    with berlin.write() as session, session.begin():
        lifecycle.update(
            session,
            ticket(session, number),
            priority="urgent",
            actor=agent(session),
            now=monday(9, 10),
        )
    row = berlin.sla(number)
    assert (row.first_response_due, row.resolution_due) == (monday(9, 30), monday(11))
    assert row.policy.name == "Urgent"
