"""Time rules under a controllable clock, on SQLite and PostgreSQL: business
time from each queue's calendar across a weekend and a holiday, once per
entry (not every minute), again after the condition was false, and again after
the moment it counts from moved; the SQL selection is exact for what it can
express and checked in Python for the rest."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from helpdesk.automation import timed
from helpdesk.automation.engine import enabled_rules
from helpdesk.models import (
    Queue,
    RuleMark,
    SlaCalendar,
    SlaHoliday,
    SlaPolicy,
    Ticket,
    User,
)
from helpdesk.tickets import conversation, lifecycle
from tests.rules_support import Desk, by_rule, mail, make_desk, runs, ticket

FRIDAY_15 = datetime(2026, 3, 6, 15, 0, tzinfo=UTC)
HOLIDAY = date(2026, 3, 9)  # the Monday after
NUDGE = {
    "name": "Nudge",
    "trigger": "time",
    "conditions": {"all": [
        {"field": "status", "op": "is", "value": "pending"},
        {"field": "hours_in_status", "op": "gte", "value": 8},
    ]},
    "actions": [{"add_tags": ["nudged"]}],
}  # fmt: skip


@pytest.fixture
def desk(engine, settings) -> Desk:  # type: ignore[no-untyped-def]
    desk = make_desk(engine, settings)
    desk.user("anna@example.com", "agent", ["help-desk", "tech-support"])
    with desk.write() as session, session.begin():
        calendar = session.scalars(select(SlaCalendar)).one()  # Mon-Fri 09-17 UTC
        session.add(SlaHoliday(calendar=calendar, day=HOLIDAY, name="Holiday"))
    return desk


def passes(desk: Desk, start: datetime, end: datetime, step: timedelta) -> list[datetime]:
    """Run the time rules every ``step`` from start to end; the instants they acted."""
    rules = timed.TimeRules(desk.write, desk.settings)
    acted, now = [], start
    while now <= end:
        if rules.run(now):
            acted.append(now)
        now += step
    return acted


def set_status(desk: Desk, number: int, status: str, now: datetime) -> None:
    with desk.write() as session, session.begin():
        found = session.scalars(select(Ticket).where(Ticket.number == number)).one()
        anna = session.scalars(select(User).where(User.email == "anna@example.com")).one()
        lifecycle.update(session, found, status=status, actor=anna, now=now)


def test_once_per_entry_in_business_time_across_a_weekend_and_a_holiday(desk, session):
    rule_id = desk.rule(NUDGE)
    number = desk.receive(mail("Waiting"), now=FRIDAY_15 - timedelta(hours=1))
    set_status(desk, number, "pending", FRIDAY_15)
    # Friday 15:00-17:00 is 2 business hours; Saturday, Sunday and the holiday Monday
    # none; Tuesday 09:00-15:00 six more: the rule acts at Tuesday 15:00, once.
    tuesday_15 = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)
    hourly = passes(desk, FRIDAY_15, tuesday_15 - timedelta(minutes=1), timedelta(hours=3))
    assert hourly == []
    assert passes(desk, tuesday_15 - timedelta(minutes=2), tuesday_15 + timedelta(minutes=5),
                  timedelta(minutes=1)) == [tuesday_15]  # fmt: skip
    assert by_rule(session, number, "Nudge") == [("tags", "", "nudged")]
    (run,) = runs(session, rule_id)
    assert (run.event, run.outcome, run.at) == ("time", "acted", tuesday_15)

    # The customer answers (the ticket opens): the condition is false, the mark goes.
    answer = tuesday_15 + timedelta(minutes=30)
    desk.receive(mail(f"Re: [HD#{number}]", body="Here you are."), now=answer)
    assert ticket(session, number).status == "open"
    passes(desk, answer, answer, timedelta(minutes=1))
    assert session.scalars(select(RuleMark)).all() == []
    # Pending again at 16:00: 8 business hours later is Wednesday 16:00.
    set_status(desk, number, "pending", answer + timedelta(minutes=30))
    wednesday_16 = datetime(2026, 3, 11, 16, 0, tzinfo=UTC)
    assert passes(desk, wednesday_16 - timedelta(minutes=3), wednesday_16 + timedelta(hours=3),
                  timedelta(minutes=1)) == [wednesday_16]  # fmt: skip
    assert [r.at for r in runs(session, rule_id)] == [tuesday_15, wednesday_16]


def test_a_new_entry_between_two_passes_counts_from_its_own_moment(desk, session):
    rule_id = desk.rule(NUDGE)
    number = desk.receive(mail("Waiting"), now=FRIDAY_15 - timedelta(hours=1))
    set_status(desk, number, "pending", FRIDAY_15)
    tuesday_15 = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)
    assert passes(desk, tuesday_15, tuesday_15, timedelta(minutes=1)) == [tuesday_15]
    # Open and pending again within one minute: no pass saw the condition false,
    # but it counts from the new moment and acts once more 8 business hours later.
    set_status(desk, number, "open", tuesday_15 + timedelta(seconds=10))
    set_status(desk, number, "pending", tuesday_15 + timedelta(seconds=20))
    wednesday = datetime(2026, 3, 11, 15, 0, tzinfo=UTC)
    acted = passes(desk, tuesday_15 + timedelta(minutes=1), wednesday + timedelta(minutes=1),
                   timedelta(minutes=30))  # fmt: skip
    assert acted == [wednesday + timedelta(minutes=1)]
    assert len(runs(session, rule_id)) == 2


def test_each_queue_counts_in_its_own_calendar(desk, session):
    desk.rule(NUDGE)
    with desk.write() as write, write.begin():
        always = SlaCalendar(name="24x7", timezone="UTC", weekly=[[[0, 1440]]] * 7,
                             created_at=FRIDAY_15)  # fmt: skip
        tech = write.scalars(select(Queue).where(Queue.slug == "tech-support")).one()
        write.add(SlaPolicy(name="Tech", position=1, queue_id=tech.id, calendar=always,
                            created_at=FRIDAY_15))  # fmt: skip
    office = desk.receive(mail("Office"), now=FRIDAY_15 - timedelta(hours=1))
    nonstop = desk.receive(
        mail("Nonstop"), now=FRIDAY_15 - timedelta(hours=1), queue="tech-support"
    )
    for number in (office, nonstop):
        set_status(desk, number, "pending", FRIDAY_15)
    saturday_0 = datetime(2026, 3, 7, 0, 0, tzinfo=UTC)  # 9 hours later, 2 business hours
    passes(desk, saturday_0, saturday_0, timedelta(minutes=1))
    assert by_rule(session, nonstop, "Nudge") == [("tags", "", "nudged")]
    assert by_rule(session, office, "Nudge") == []


def test_conditions_sql_cannot_express_are_checked_per_ticket(desk, session):
    rule_id = desk.rule({
        "name": "Refunds waiting",
        "trigger": "time",
        "conditions": {"all": [
            {"field": "subject", "op": "regex", "value": r"refund\s+#\d+"},
            {"field": "hours_since_created", "op": "gte", "value": 1},
        ]},
        "actions": [{"set": "priority", "value": "high"}],
    })  # fmt: skip
    yes = desk.receive(mail("Refund #12 please"), now=FRIDAY_15)
    no = desk.receive(mail("Refund soon please"), now=FRIDAY_15)
    with desk.write() as write, write.begin():
        (rule,) = enabled_rules(write)["time"]
        assert timed.selection(write, rule, FRIDAY_15).exact is False
    later = FRIDAY_15 + timedelta(hours=1)
    assert passes(desk, later, later + timedelta(minutes=2), timedelta(minutes=1)) == [later]
    assert ticket(session, yes).priority == "high"
    assert ticket(session, no).priority == "normal"
    assert len(runs(session, rule_id)) == 1


def test_the_ready_made_rules_select_exactly_in_sql(desk, session):
    from helpdesk.automation import library

    with desk.write() as write, write.begin():
        library.seed(write, now=FRIDAY_15)  # counter says seeded: adds nothing
        assert write.scalars(select(timed.RuleMark)).all() == []
    desk_rules = make_desk(desk.engine, desk.settings, presets_off=False)
    for key, data in library.PRESETS:
        if data["trigger"] == "time":
            desk_rules.rule({**data, "name": f"copy {key}"})
    with desk.write() as write, write.begin():
        for rule in enabled_rules(write)["time"]:
            assert timed.selection(write, rule, FRIDAY_15).exact, rule.name


def test_only_one_worker_runs_the_pass(desk, session):
    desk.rule(NUDGE)
    numbers = [
        desk.receive(mail(f"Waiting {i}"), now=FRIDAY_15 - timedelta(hours=1)) for i in (1, 2)
    ]
    set_status(desk, numbers[0], "pending", FRIDAY_15)
    set_status(desk, numbers[1], "pending", FRIDAY_15 + timedelta(seconds=5))
    tuesday_15 = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)
    first = timed.TimeRules(desk.write, desk.settings)
    second = timed.TimeRules(desk.write, desk.settings)
    assert first.run(tuesday_15) == 1  # takes the lease
    assert second.run(tuesday_15 + timedelta(seconds=10)) == 0  # the lease is the first one's
    assert first.run(tuesday_15 + timedelta(seconds=20)) == 1
    assert by_rule(session, numbers[1], "Nudge") == [("tags", "", "nudged")]
    number = numbers[0]
    # A reply of an agent: the ticket's moments are kept by the lifecycle.
    with desk.write() as write, write.begin():
        found = write.scalars(select(Ticket).where(Ticket.number == number)).one()
        anna = write.scalars(select(User).where(User.email == "anna@example.com")).one()
        conversation.reply(write, found, actor=anna, text="Any news?", settings=desk.settings,
                           now=tuesday_15)  # fmt: skip
    found = ticket(session, number)
    assert found.last_agent_reply_at == tuesday_15
    assert found.last_customer_message_at == FRIDAY_15 - timedelta(hours=1)
