"""SLA reports against a brute-force recomputation, on SQLite and PostgreSQL.

Months of tickets with varied lives (acknowledgements, notes, replies,
customer and automatic mail, pending periods, resolutions, closes and
reopenings; several queues, priorities, policies and agents) are written to
the database and refreshed with ``helpdesk.sla.service.refresh``. The test
then recomputes every ticket's clocks from the raw rows (its own policy
choice and timeline, ``compute`` for the clocks) and every figure in plain
Python (its own grouping, period buckets and percentiles), and compares
them with ``helpdesk.sla.report.build`` (SQL aggregates on PostgreSQL, rows
on SQLite), the CSV exports, the page and the JSON API.
"""

from __future__ import annotations

import csv
import io
import random
import statistics
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from helpdesk.accounts import users
from helpdesk.db import session_factory
from helpdesk.models import (
    Contact,
    Message,
    Queue,
    SlaCalendar,
    SlaHoliday,
    SlaPolicy,
    Ticket,
    TicketEvent,
    TicketSla,
    User,
)
from helpdesk.sla import report as sla_report
from helpdesk.sla import service as sla_service
from helpdesk.sla.calendar import Calendar
from helpdesk.sla.clocks import Event, Targets, compute
from helpdesk.tickets.operation import direct_writes

ZONE = "Europe/Berlin"
BEGIN = datetime(2026, 1, 5, tzinfo=UTC)
LAST_CREATED = datetime(2026, 5, 20, tzinfo=UTC)
NOW = datetime(2026, 5, 25, 12, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
OFFICE = ((540, 1020),)
WEEKLY = [[list(r) for r in OFFICE]] * 5 + [[], []]
EASTER_MONDAY = date(2026, 4, 6)
AUTOMATED = {"auto_reply", "out_of_office", "bulk", "bounce", "loop"}  # flags of robots' mail

AGENTS = {
    "ann@example.com": ["help-desk", "service-desk"],
    "bert@example.com": ["help-desk"],
    "cleo@example.com": ["service-desk", "tech-support"],
    "dan@example.com": ["tech-support"],
}
# (name, position, queue, priority, first response, next response, resolution,
#  business?, warn %), first match by position wins; the seeded Default is last.
POLICIES = [
    ("Urgent", 5, None, "urgent", 30, 30, 240, True, 80),
    ("Help desk", 10, "help-desk", None, 120, 60, 960, True, 80),
    ("Service desk", 20, "service-desk", None, 60, None, 2880, False, 50),
    ("Default", 1000, None, None, 240, None, 1440, True, 80),
]


# --- Generated history -------------------------------------------------------------


def generate(engine) -> None:  # type: ignore[no-untyped-def]
    """About 180 tickets from January to May, written as raw rows, then refreshed.

    Raw rows, history included, as an import would write them: past the lifecycle.
    """
    rng = random.Random(6)
    with session_factory(engine, write=True)() as session, session.begin(), direct_writes():
        office = session.scalars(select(SlaCalendar)).one()  # the seeded calendar
        office.timezone = ZONE
        office.weekly = WEEKLY
        office.holidays.append(SlaHoliday(day=EASTER_MONDAY, name="Ostermontag"))
        queues = {q.slug: q for q in session.scalars(select(Queue))}
        for name, position, slug, priority, fr, nr, res, business, warn in POLICIES[:-1]:
            session.add(
                SlaPolicy(
                    name=name,
                    position=position,
                    queue_id=queues[slug].id if slug else None,
                    priority=priority,
                    calendar_id=office.id,
                    first_response_minutes=fr,
                    first_response_business=business,
                    next_response_minutes=nr,
                    next_response_business=business,
                    resolution_minutes=res,
                    resolution_business=business,
                    warn_percent=warn,
                    created_at=BEGIN,
                )
            )
        agents = {}
        for email, slugs in AGENTS.items():
            agents[email] = users.add_or_update(
                session, email, role="agent", queue_slugs=slugs, now=BEGIN
            )
        session.flush()
        span = int((LAST_CREATED - BEGIN) / MINUTE)
        tickets, workers = [], []
        for number in range(1, 181):
            slug = rng.choice(sorted(queues))
            staff = [agents[e] for e, slugs in AGENTS.items() if slug in slugs]
            created = BEGIN + rng.randrange(span) * MINUTE
            contact = Contact(email=f"c{number}@customer.example", created_at=created)
            assignee = rng.choice([None, *staff])
            ticket = Ticket(
                number=number,
                queue=queues[slug],
                requester=contact,
                assignee=assignee,
                subject=f"Case {number}",
                priority=rng.choice(["normal"] * 5 + ["low", "high", "urgent"]),
                created_at=created,
                updated_at=created,
            )
            session.add(ticket)
            tickets.append(ticket)
            workers.append(assignee or rng.choice(staff))
        session.flush()  # one round trip per table, not per ticket (PostgreSQL)
        for ticket, worker in zip(tickets, workers, strict=True):
            live(session, ticket, rng, worker)
        tickets[7].merged_into_id = tickets[8].id  # not reported on its own
        session.flush()
        for ticket in tickets:
            sla_service.refresh(session, ticket, now=NOW)


def live(session, ticket: Ticket, rng: random.Random, agent: User) -> None:  # type: ignore[no-untyped-def]
    """A random but plausible life for the ticket, up to NOW."""
    at = ticket.created_at
    status = "new"

    def message(kind: str, author: User | None = None, flags: tuple[str, ...] = ()) -> None:
        session.add(
            Message(
                ticket=ticket, kind=kind, message_id=f"<{ticket.number}.{at.timestamp()}.{kind}@x>",
                author_id=author.id if author else None, flags=list(flags), created_at=at,
            )
        )  # fmt: skip

    def change(new: str) -> None:
        nonlocal status
        session.add(
            TicketEvent(
                ticket_id=ticket.id, kind="status", old_value=status, new_value=new, created_at=at,
                actor_id=None if new == "open" and status != "new" else agent.id,
            )
        )  # fmt: skip
        status = new

    message("inbound")
    if rng.random() < 0.7:
        message("outbound")  # the automatic acknowledgement: no author
    for _ in range(rng.randrange(0, 10)):
        gap = rng.choice([rng.randrange(1, 90), rng.randrange(60, 900), rng.randrange(600, 8000)])
        at = at + gap * MINUTE
        if at >= NOW:
            break
        action = rng.choice(
            ["reply"] * 4 + ["customer"] * 3 + ["note", "robot", "pending", "resolve"] * 2
            + ["close", "reopen"]
        )  # fmt: skip
        if action == "reply":
            message("outbound", agent)
            if status == "new":
                change("open")
        elif action == "note":
            message("note", agent)
        elif action == "robot":
            message("inbound", flags=("auto_reply",))
        elif action == "customer":
            message("inbound")
            if status in ("pending", "resolved", "closed"):
                change("open")
        elif action == "pending" and status in ("new", "open"):
            change("pending")
        elif action == "resolve" and status not in ("resolved", "closed"):
            change("resolved")
        elif action == "close" and status != "closed":
            change("closed")
        elif action == "reopen" and status in ("resolved", "closed"):
            change("open")
    ticket.status = status
    ticket.updated_at = at


# --- The brute force ---------------------------------------------------------------


@dataclass
class Truth:
    """One ticket's outcome, recomputed from its raw rows."""

    number: int
    subject: str
    queue: str
    assignee: str
    status: str
    created_at: datetime
    resolved_at: datetime | None
    first_response_minutes: float | None
    first_response_breached_at: datetime | None
    first_response_at: datetime | None
    resolution_minutes: float | None
    resolution_breached_at: datetime | None
    next_response_breached_at: datetime | None
    next_response_outcome: bool
    policy: str = ""  # the name of the policy chosen by the test

    @property
    def breached(self) -> bool:
        return bool(
            self.first_response_breached_at
            or self.resolution_breached_at
            or self.next_response_breached_at
        )


def truths(session) -> list[Truth]:  # type: ignore[no-untyped-def]
    """Every reportable ticket's clocks, from tickets, messages and status events."""
    calendar = Calendar(ZONE, (OFFICE,) * 5 + ((), ()), frozenset({EASTER_MONDAY}))
    emails = dict(session.execute(select(User.id, User.email)).all())
    slugs = dict(session.execute(select(Queue.id, Queue.slug)).all())
    timelines: dict[int, list[Event]] = {}
    for ticket_id, kind, author, flags, at in session.execute(
        select(
            Message.ticket_id, Message.kind, Message.author_id, Message.flags, Message.created_at
        )
    ):
        if kind == "inbound" and author is None and not AUTOMATED & set(flags):
            timelines.setdefault(ticket_id, []).append(Event(at, "customer"))
        elif kind == "outbound" and author is not None:
            timelines.setdefault(ticket_id, []).append(Event(at, "reply"))
    for ticket_id, value, at in session.execute(
        select(TicketEvent.ticket_id, TicketEvent.new_value, TicketEvent.created_at)
        .where(TicketEvent.kind == "status")
        .order_by(TicketEvent.id)
    ):
        timelines.setdefault(ticket_id, []).append(Event(at, "status", value))
    out = []
    for ticket in session.scalars(select(Ticket).order_by(Ticket.number)):
        if ticket.merged_into_id is not None:
            continue
        queue = slugs[ticket.queue_id]
        name, _, _, _, fr, nr, res, business, warn = next(
            p for p in POLICIES if p[2] in (None, queue) and p[3] in (None, ticket.priority)
        )
        targets = Targets(fr, res, nr, business, business, business, warn)
        events = sorted(timelines.get(ticket.id, []), key=lambda e: e.at)
        result = compute(targets, calendar, ticket.created_at, events, now=NOW)
        first, resolution = result.clocks["first_response"], result.clocks["resolution"]
        out.append(
            Truth(
                number=ticket.number,
                subject=ticket.subject,
                queue=queue,
                assignee=emails.get(ticket.assignee_id, ""),
                status=ticket.status,
                created_at=ticket.created_at,
                resolved_at=result.resolved_at,
                first_response_minutes=first.elapsed if result.first_response_at else None,
                first_response_breached_at=first.breached_at,
                first_response_at=result.first_response_at,
                resolution_minutes=resolution.elapsed if result.resolved_at else None,
                resolution_breached_at=resolution.breached_at,
                next_response_breached_at=result.next_response_breached_at,
                next_response_outcome=result.next_response_breached_at is not None
                or result.next_response_answered > 0,
                policy=name,
            )
        )
    return out


def pctl(values: list[float], fraction: float) -> float | None:
    """Percentiles by the statistics module (inclusive: linear between ranks)."""
    if not values:
        return None
    if len(values) == 1:
        return float(values[0])
    if fraction == 0.5:
        return float(statistics.median(values))
    return statistics.quantiles(values, n=10, method="inclusive")[round(fraction * 10) - 1]


def percent(part: int, whole: int) -> float | None:
    return None if whole == 0 else part * 100 / whole


def figures(rows: list[Truth], start: datetime, end: datetime) -> dict:
    """Every figure of one period, from the definitions in the report's docstring."""
    made = [t for t in rows if start <= t.created_at < end]
    done = [t for t in rows if t.resolved_at is not None and start <= t.resolved_at < end]
    backlog = [
        t for t in rows if t.created_at < end and (t.resolved_at is None or t.resolved_at >= end)
    ]
    first_times = [t.first_response_minutes for t in made if t.first_response_minutes is not None]
    resolution_times = [t.resolution_minutes for t in done if t.resolution_minutes is not None]
    first_outcome = [t for t in made if t.first_response_at or t.first_response_breached_at]
    resolution_outcome = {t.number: t for t in done}
    resolution_outcome.update({t.number: t for t in made if t.resolution_breached_at})
    next_outcome = [t for t in made if t.next_response_outcome]
    return {
        "created": len(made),
        "resolved": len(done),
        "backlog": len(backlog),
        "first_response_median": pctl(first_times, 0.5),
        "first_response_p90": pctl(first_times, 0.9),
        "resolution_median": pctl(resolution_times, 0.5),
        "resolution_p90": pctl(resolution_times, 0.9),
        "first_response_within": percent(
            sum(t.first_response_breached_at is None for t in first_outcome), len(first_outcome)
        ),
        "resolution_within": percent(
            sum(t.resolution_breached_at is None for t in resolution_outcome.values()),
            len(resolution_outcome),
        ),
        "next_response_within": percent(
            sum(t.next_response_breached_at is None for t in next_outcome), len(next_outcome)
        ),
        "breaches": sum(t.breached for t in made),
    }


def periods(
    start: datetime, end: datetime, bucket: str, zone: str
) -> list[tuple[date, datetime, datetime]]:
    """Local days, weeks (from Monday) or months covering [start, end), clipped to it."""
    tz = ZoneInfo(zone)
    day = start.astimezone(tz).date()
    if bucket == "week":
        day -= timedelta(days=day.weekday())
    elif bucket == "month":
        day = day.replace(day=1)
    out = []
    while (lo := datetime.combine(day, datetime.min.time(), tz).astimezone(UTC)) < end:
        if bucket == "day":
            following = day + timedelta(days=1)
        elif bucket == "week":
            following = day + timedelta(days=7)
        else:
            following = date(day.year + day.month // 12, day.month % 12 + 1, 1)
        hi = datetime.combine(following, datetime.min.time(), tz).astimezone(UTC)
        out.append((day, max(lo, start), min(hi, end)))
        day = following
    return out


def expected_report(all_rows: list[Truth], query: sla_report.ReportQuery) -> dict:
    rows = [
        t
        for t in all_rows
        if (query.queue is None or t.queue == query.queue)
        and (query.agent is None or t.assignee == query.agent)
    ]

    def grouped(key) -> dict:  # type: ignore[no-untyped-def]
        out = {}
        for name in sorted({key(t) for t in rows}):
            fig = figures([t for t in rows if key(t) == name], query.start, query.end)
            if fig["created"] + fig["resolved"] + fig["backlog"]:
                out[name] = fig
        return out

    return {
        "totals": figures(rows, query.start, query.end),
        "by_queue": grouped(lambda t: t.queue),
        "by_agent": grouped(lambda t: t.assignee or "(unassigned)"),
        "trend": [
            (day, figures(rows, lo, hi))
            for day, lo, hi in periods(query.start, query.end, query.bucket, query.timezone)
        ],
        "breaches": sorted(
            t.number for t in rows if query.start <= t.created_at < query.end and t.breached
        ),
    }


def same(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for key, value in want.items():
        if isinstance(value, float):
            assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-9), key
        else:
            assert got[key] == value, key


def compare(report: sla_report.Report, want: dict) -> None:
    same(asdict(report.totals), want["totals"])
    assert list(report.by_queue) == list(want["by_queue"])
    for name, fig in report.by_queue.items():
        same(asdict(fig), want["by_queue"][name])
    assert list(report.by_agent) == list(want["by_agent"])
    for name, fig in report.by_agent.items():
        same(asdict(fig), want["by_agent"][name])
    assert [day for day, _ in report.trend] == [day for day, _ in want["trend"]]
    for (day, fig), (_, expected) in zip(report.trend, want["trend"], strict=True):
        try:
            same(asdict(fig), expected)
        except AssertionError as exc:
            raise AssertionError(f"bucket {day}: {exc}") from exc
    assert [r.number for r in report.breaches] == want["breaches"]


# --- Tests -------------------------------------------------------------------------


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(ZONE)).astimezone(UTC)


QUERIES = {
    "weeks": dict(start=local(2026, 2, 1), end=local(2026, 5, 1), bucket="week"),
    "months": dict(start=local(2026, 2, 1), end=local(2026, 5, 1), bucket="month"),
    "days over DST": dict(start=local(2026, 3, 1), end=local(2026, 4, 1), bucket="day"),
    "help-desk": dict(start=local(2026, 2, 1), end=local(2026, 5, 1), queue="help-desk"),
    "one agent": dict(start=local(2026, 1, 1), end=local(2026, 6, 1), agent="cleo@example.com"),
    "ragged range": dict(start=local(2026, 1, 14, 12), end=local(2026, 4, 15, 8), bucket="week"),
    "everything, UTC": dict(
        start=datetime(2026, 1, 1, tzinfo=UTC), end=NOW, bucket="month", timezone="UTC"
    ),
}


@pytest.fixture
def history(engine):  # type: ignore[no-untyped-def]
    generate(engine)
    return engine


def test_every_figure_matches_the_brute_force(history, session):
    rows = truths(session)
    # The generated data exercises what the figures count.
    assert len(rows) == 179
    assert sum(t.resolved_at is not None for t in rows) > 40
    assert sum(t.breached for t in rows) > 20
    assert sum(t.next_response_outcome for t in rows) > 10
    assert len({t.queue for t in rows}) == 3 and len({t.assignee for t in rows}) == 5
    for name, args in QUERIES.items():
        query = sla_report.ReportQuery(**{"timezone": ZONE, **args})
        want = expected_report(rows, query)
        assert want["totals"]["created"] > 0, name
        try:
            compare(sla_report.build(session, query), want)
        except AssertionError as exc:
            raise AssertionError(f"query {name}: {exc}") from exc

    # What the figures are made of: each stored ticket row equals its recomputation.
    query = sla_report.ReportQuery(start=BEGIN, end=NOW, timezone=ZONE)
    stored = {row.number: row for row in sla_report.ticket_rows(session, query)}
    assert sorted(stored) == [t.number for t in rows]
    policies = dict(
        session.execute(
            select(Ticket.number, SlaPolicy.name)
            .join(TicketSla, TicketSla.ticket_id == Ticket.id)
            .join(SlaPolicy, SlaPolicy.id == TicketSla.policy_id)
        ).all()
    )
    for truth in rows:
        got, want = asdict(stored[truth.number]), asdict(truth)
        assert policies[truth.number] == want.pop("policy"), truth.number
        for key in ("first_response_minutes", "resolution_minutes"):
            assert got.pop(key) == pytest.approx(want.pop(key)), (truth.number, key)
        assert got == want, truth.number


@pytest.fixture
def web(engine, settings, make_user):  # type: ignore[no-untyped-def]
    """The web app in the report's time zone, with a manager, an admin and an agent."""
    from helpdesk.web import create_app

    tokens = {
        role: make_user(f"{role}@example.com", role, ["help-desk"])
        for role in ("manager", "admin", "agent")
    }
    app = create_app(replace(settings, timezone=ZONE), engine)
    app.config.update(TESTING=True)
    return app, tokens


RANGE = "period=range&start=2026-02-01&end=2026-04-30&bucket=week"


def parse(value: str):  # type: ignore[no-untyped-def]
    if value == "":
        return None
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def test_exports_api_and_page_match_the_brute_force(history, web, session):
    app, tokens = web
    client = app.test_client()
    sign_in(client, "manager@example.com")
    query = sla_report.ReportQuery(start=local(2026, 2, 1), end=local(2026, 5, 1), timezone=ZONE)
    rows = truths(session)
    want = expected_report(rows, query)

    response = client.get(f"/reports/sla.csv?{RANGE}")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    table = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    header, body = table[0], table[1:]
    assert header[:2] == ["scope", "key"]
    read = [
        (scope, key, dict(zip(header[2:], map(parse, values), strict=True)))
        for scope, key, *values in body
    ]
    expected = [("total", "", want["totals"])]
    expected += [("queue", k, v) for k, v in want["by_queue"].items()]
    expected += [("agent", k, v) for k, v in want["by_agent"].items()]
    expected += [("week", day.isoformat(), v) for day, v in want["trend"]]
    assert [(s, k) for s, k, _ in read] == [(s, k) for s, k, _ in expected]
    for (_, _, got), (_, _, figs) in zip(read, expected, strict=True):
        same(got, figs)

    response = client.get(f"/reports/sla.csv?{RANGE}&kind=tickets")
    assert response.status_code == 200
    records = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    in_scope = [
        t
        for t in rows
        if t.created_at < query.end
        and (t.created_at >= query.start or t.resolved_at is None or t.resolved_at >= query.start)
    ]
    assert [int(r["number"]) for r in records] == [t.number for t in in_scope]
    for record, truth in zip(records, in_scope, strict=True):
        for key, value in asdict(truth).items():
            if key == "policy":
                continue
            text = record[key]
            if isinstance(value, datetime):
                assert datetime.fromisoformat(text) == value, (truth.number, key)
            elif isinstance(value, float):
                assert float(text) == pytest.approx(value), (truth.number, key)
            elif value is None:
                assert text == "", (truth.number, key)
            else:
                assert text == str(value), (truth.number, key)

    response = client.get(
        f"/api/v1/reports/sla?{RANGE}", headers={"Authorization": f"Bearer {tokens['manager']}"}
    )
    assert response.status_code == 200
    data = response.get_json()
    assert datetime.fromisoformat(data["start"]) == query.start
    assert datetime.fromisoformat(data["end"]) == query.end
    same(data["totals"], want["totals"])
    assert list(data["by_queue"]) == list(want["by_queue"])
    for name, figs in want["by_queue"].items():
        same(data["by_queue"][name], figs)
    assert sorted(data["by_agent"]) == sorted(want["by_agent"])
    for name, figs in want["by_agent"].items():
        same(data["by_agent"][name], figs)
    assert [b["start"] for b in data["trend"]] == [d.isoformat() for d, _ in want["trend"]]
    for bucket, (_, figs) in zip(data["trend"], want["trend"], strict=True):
        same({k: v for k, v in bucket.items() if k != "start"}, figs)
    assert data["breaches"] == want["breaches"]

    page = client.get(f"/reports/sla?{RANGE}")
    assert page.status_code == 200
    assert b"<svg" in page.data
    for number in want["breaches"][:5]:
        assert f"/tickets/{number}".encode() in page.data


@pytest.mark.parametrize(("role", "status"), [("manager", 200), ("admin", 200), ("agent", 404)])
def test_only_managers_and_admins_see_reports(web, role, status):
    """Rights need no data: an agent gets 404 from the page, both exports and the API."""
    app, tokens = web
    client = app.test_client()
    api = client.get(
        f"/api/v1/reports/sla?{RANGE}", headers={"Authorization": f"Bearer {tokens[role]}"}
    )
    assert api.status_code == status
    sign_in(client, f"{role}@example.com")
    assert client.get(f"/reports/sla?{RANGE}").status_code == status
    assert client.get(f"/reports/sla.csv?{RANGE}").status_code == status
    assert client.get(f"/reports/sla.csv?{RANGE}&kind=tickets").status_code == status


@settings(max_examples=200, deadline=None, database=None)
@given(
    st.lists(st.floats(0, 1e6, allow_nan=False), max_size=30),
    st.sampled_from([0.5, 0.9]),
)
def test_percentile_interpolates_like_percentile_cont(values, fraction):
    got = sla_report.percentile(values, fraction)
    want = pctl(values, fraction)
    assert (got is None) == (want is None)
    if want is not None:
        assert got == pytest.approx(want, rel=1e-9, abs=1e-6)


def sign_in(client, email: str, password: str = "password123") -> None:  # type: ignore[no-untyped-def]
    import re

    page = client.get("/login").data
    token = re.search(rb'name="csrf_token"[^>]*value="([^"]+)"', page)
    assert token, "no CSRF token on the sign-in page"
    response = client.post(
        "/login", data={"email": email, "password": password, "csrf_token": token.group(1)}
    )
    assert response.status_code == 302
