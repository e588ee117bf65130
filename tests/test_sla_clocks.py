"""SLA clock semantics of the pure ``helpdesk.sla.clocks.compute``.

A brute-force simulator walks a ticket's life one minute at a time, reading
the rules of the issue literally (first response stops at the first agent
reply; next response runs from each customer message after it until the
next reply; resolution runs while new or open; every clock pauses while
pending; a reopened ticket's resolution clock resumes), and hypothesis checks
that ``compute`` agrees on every clock field. Worked examples follow, one per
rule, with a calendar a person can check by hand.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpdesk.sla.calendar import Calendar
from helpdesk.sla.clocks import Event, Targets, compute

MINUTE = timedelta(minutes=1)
ACTIVE = ("new", "open")
DONE = ("resolved", "closed")
STATUSES = ("new", "open", "pending", "resolved", "closed")

EXAMPLES = int(os.environ.get("HELPDESK_TEST_SLA_EXAMPLES", "60"))
HYPOTHESIS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# --- The brute-force simulator --------------------------------------------------------


def working(calendar: Calendar, moment: datetime) -> bool:
    """The calendar's definition, one minute at a time (see test_sla_calendar)."""
    wall = moment.astimezone(ZoneInfo(calendar.timezone)).replace(tzinfo=None)
    for back in (0, 1):
        day = wall.date() - timedelta(days=back)
        if day in calendar.holidays:
            continue
        midnight = datetime.combine(day, time())
        for start, end in calendar.weekly[day.weekday()]:
            if midnight + start * MINUTE <= wall < midnight + end * MINUTE:
                return True
    return False


@dataclass
class Tally:
    """One clock: counts its minutes and notes when it reached its target and warning."""

    calendar: Calendar
    target: float
    warn: float
    now: datetime
    started: datetime | None = None
    stopped_at: datetime | None = None
    used: int = 0
    elapsed: int = 0
    due: datetime | None = None
    warn_at: datetime | None = None
    cache: dict[datetime, bool] = field(default_factory=dict)

    def tick(self, moment: datetime) -> None:
        if not self._working(moment):
            return
        if self.due is None and self.used < self.target <= self.used + 1:
            self.due = moment + (self.target - self.used) * MINUTE
        if self.warn_at is None and self.used < self.warn <= self.used + 1:
            self.warn_at = moment + (self.warn - self.used) * MINUTE
        self.used += 1
        if moment < self.now:
            self.elapsed += 1

    def _working(self, moment: datetime) -> bool:
        if moment not in self.cache:
            self.cache[moment] = working(self.calendar, moment)
        return self.cache[moment]

    def expected(self, running: bool) -> dict:
        return {
            "target": self.target,
            "elapsed": self.elapsed,
            "due": self.due,
            # Breached once more than the target is used: a reply at the due minute is in time.
            "breached_at": self.due if self.elapsed > self.target else None,
            "warn_at": self.warn_at,
            "running": running,
            "stopped_at": self.stopped_at,
        }


def simulate(
    targets: Targets,
    business: Calendar,
    created: datetime,
    events: list[Event],
    now: datetime,
    horizon: timedelta,
) -> dict:
    """Every clock of the ticket at ``now``, minute by minute; a running clock
    is projected on (its status unchanged) up to ``now + horizon``."""
    wall = Calendar.always(business.timezone)
    events = sorted((e for e in events if e.at <= now), key=lambda e: e.at)
    limit = now + horizon

    def tally(minutes: int | None, business_time: bool) -> Tally | None:
        if minutes is None:
            return None
        calendar = business if business_time else wall
        return Tally(calendar, minutes, minutes * targets.warn_percent / 100, now)

    first = tally(targets.first_response, targets.first_response_business)
    resolution = tally(targets.resolution, targets.resolution_business)
    cycles: list[Tally] = []
    cycle: Tally | None = None
    status, first_reply, done_since = "new", None, None
    paused, pause_cache = 0, Tally(business, 0, 0, now)  # a Tally for its cached calendar
    index, moment = 0, created
    while moment < limit:
        while index < len(events) and events[index].at <= moment:
            event = events[index]
            index += 1
            if event.kind == "status":
                if event.value in DONE and status not in DONE:
                    done_since = event.at
                elif event.value not in DONE:
                    done_since = None
                status = event.value
            elif event.kind == "reply":
                if first_reply is None:
                    first_reply = event.at
                    if first:
                        first.stopped_at = event.at
                elif cycle is not None:
                    cycle.stopped_at = event.at
                    cycle = None
            elif event.kind == "customer" and first_reply is not None and cycle is None:
                cycle = tally(targets.next_response, targets.next_response_business)
                if cycle is not None:
                    cycle.started = event.at
                    cycles.append(cycle)
        if moment >= now and status not in ACTIVE:
            break  # nothing runs on
        if status in ACTIVE:
            if first is not None and first_reply is None:
                first.tick(moment)
            if cycle is not None:
                cycle.tick(moment)
            if resolution is not None:
                resolution.tick(moment)
        elif status == "pending" and moment < now and pause_cache._working(moment):
            paused += 1
        moment += MINUTE

    active = status in ACTIVE
    clocks = {}
    if first is not None:
        clocks["first_response"] = first.expected(active and first_reply is None)
    if cycles:
        clocks["next_response"] = cycles[-1].expected(active and cycles[-1].stopped_at is None)
    if resolution is not None:
        resolution.stopped_at = done_since
        clocks["resolution"] = resolution.expected(active)
    breaches = [c["breached_at"] for c in clocks.values()]
    nr_breach = next(
        (b for b in (c.expected(False)["breached_at"] for c in cycles) if b is not None), None
    )
    running = [c for c in clocks.values() if c["running"]]
    if not clocks:
        state = "none"
    elif status == "pending":
        state = "paused"
    elif any(c["breached_at"] is not None for c in running):
        state = "breached"
    elif any(c["warn_at"] is not None and c["warn_at"] <= now for c in running):
        state = "due_soon"
    elif running:
        state = "running"
    else:
        state = "breached" if nr_breach or any(breaches) else "met"
    return {
        "clocks": clocks,
        "first_response_at": first_reply,
        "resolved_at": done_since,
        "paused_minutes": paused,
        "state": state,
        "next_response_started": cycles[-1].started if cycles else None,
        "next_response_breached_at": nr_breach,
        "next_response_answered": sum(1 for c in cycles if c.stopped_at is not None),
    }


def same_instant(got: datetime | None, want: datetime | None, limit: datetime) -> bool:
    """Equal to the millisecond (fractional targets), or both beyond the horizon."""
    if want is None:
        return got is None or got >= limit
    return got is not None and abs(got - want) <= timedelta(milliseconds=1)


def check(result, want: dict, limit: datetime) -> None:  # type: ignore[no-untyped-def]
    assert set(result.clocks) == set(want["clocks"])
    for name, clock in result.clocks.items():
        expected = want["clocks"][name]
        assert clock.target == expected["target"], name
        assert clock.elapsed == pytest.approx(expected["elapsed"]), name
        assert clock.running is expected["running"], name
        assert clock.stopped_at == expected["stopped_at"], name
        for key in ("due", "breached_at", "warn_at"):
            assert same_instant(getattr(clock, key), expected[key], limit), (name, key)
    assert result.first_response_at == want["first_response_at"]
    assert result.resolved_at == want["resolved_at"]
    assert result.paused_minutes == pytest.approx(want["paused_minutes"])
    assert result.state == want["state"]
    assert result.next_response_started == want["next_response_started"]
    assert result.next_response_breached_at == want["next_response_breached_at"]
    assert result.next_response_answered == want["next_response_answered"]


# --- Property ----------------------------------------------------------------------

CALENDARS = [
    Calendar.office_hours("Europe/Berlin"),
    Calendar.office_hours("America/New_York"),
    Calendar(  # two ranges a day, a night shift on Fridays, and a holiday
        "Europe/Berlin",
        (((480, 720), (780, 1020)),) * 4 + (((480, 720), (1320, 1800)),) + ((), ()),
        frozenset({datetime(2026, 3, 30).date(), datetime(2026, 10, 26).date()}),
    ),
    Calendar.always("UTC"),
]
STARTS = [
    datetime(2026, 3, 27, 14, tzinfo=UTC),  # the Friday before Berlin's spring change
    datetime(2026, 10, 23, 15, tzinfo=UTC),  # the Friday before Berlin's autumn change
    datetime(2026, 3, 6, 20, tzinfo=UTC),  # the Friday before New York's spring change
    datetime(2026, 10, 30, 20, tzinfo=UTC),  # the Friday before New York's autumn change
]
HORIZON = timedelta(days=12)


@st.composite
def tickets(draw: st.DrawFn):  # type: ignore[no-untyped-def]
    calendar = draw(st.sampled_from(CALENDARS))
    created = draw(st.sampled_from(STARTS)) + draw(st.integers(-1440, 1440)) * MINUTE
    offsets = draw(st.lists(st.integers(1, 4 * 1440), max_size=9, unique=True))
    kinds = st.one_of(
        st.just(("customer", "")),
        st.just(("reply", "")),
        st.sampled_from(STATUSES).map(lambda s: ("status", s)),
    )
    events = [Event(created, "customer")]
    for offset in offsets:
        kind, value = draw(kinds)
        events.append(Event(created + offset * MINUTE, kind, value))
    now = created + draw(st.integers(0, 5 * 1440)) * MINUTE
    target = st.one_of(st.none(), st.integers(1, 900))
    targets = Targets(
        first_response=draw(target),
        resolution=draw(st.one_of(st.none(), st.integers(1, 3000))),
        next_response=draw(target),
        first_response_business=draw(st.booleans()),
        next_response_business=draw(st.booleans()),
        resolution_business=draw(st.booleans()),
        warn_percent=draw(st.sampled_from([80, 80, 50, 90, 100, 33])),
    )
    return targets, calendar, created, draw(st.permutations(events)), now


@HYPOTHESIS
@given(tickets())
def test_compute_matches_a_minute_by_minute_simulation(ticket):
    targets, calendar, created, events, now = ticket
    want = simulate(targets, calendar, created, events, now, HORIZON)
    check(compute(targets, calendar, created, list(events), now=now), want, now + HORIZON)


# --- Worked examples ---------------------------------------------------------------

OFFICE = Calendar.office_hours("UTC")  # Monday to Friday, 09:00 to 17:00
FRIDAY = datetime(2026, 5, 15, tzinfo=UTC)
MONDAY = datetime(2026, 5, 18, tzinfo=UTC)
TUESDAY = MONDAY + timedelta(days=1)


def at(day: datetime, hour: int, minute: int = 0) -> datetime:
    return day.replace(hour=hour, minute=minute)


def run(targets: Targets, created: datetime, events: list[Event], now: datetime, calendar=OFFICE):  # type: ignore[no-untyped-def]
    result = compute(targets, calendar, created, events, now=now)
    limit = now + HORIZON
    check(result, simulate(targets, calendar, created, events, now, HORIZON), limit)
    return result


def test_first_response_stops_at_the_first_agent_reply():
    targets = Targets(first_response=120, resolution=None)
    created = at(MONDAY, 9)
    events = [
        Event(created, "customer"),
        Event(at(MONDAY, 9, 40), "reply"),
        Event(at(MONDAY, 9, 50), "reply"),  # later replies change nothing
    ]
    result = run(targets, created, events, now=at(TUESDAY, 12))
    clock = result.clocks["first_response"]
    assert (clock.elapsed, clock.running, clock.breached_at) == (40, False, None)
    assert result.first_response_at == at(MONDAY, 9, 40)
    assert result.state == "met"


def test_first_response_runs_until_replied_and_breaches_at_its_target():
    """Received Friday 16:30, 2 business hours: due Monday 10:30, breached after."""
    targets = Targets(first_response=120, resolution=None)
    created = at(FRIDAY, 16, 30)
    waiting = run(targets, created, [Event(created, "customer")], now=at(MONDAY, 10, 6))
    assert waiting.clocks["first_response"].due == at(MONDAY, 10, 30)
    assert waiting.clocks["first_response"].warn_at == at(MONDAY, 10, 6)  # 80% of 120
    assert waiting.state == "due_soon"
    assert run(targets, created, [], now=at(MONDAY, 9, 30)).state == "running"
    late = run(targets, created, [Event(at(MONDAY, 11), "reply")], now=at(MONDAY, 12))
    clock = late.clocks["first_response"]
    assert (clock.elapsed, clock.breached_at) == (150, at(MONDAY, 10, 30))
    assert late.breached and late.state == "breached"


def test_a_reply_at_the_due_instant_is_in_time():
    """Due 10:30 means by 10:30: a reply then is within target, a minute later is not."""
    targets = Targets(first_response=120, resolution=None)
    created = at(FRIDAY, 16, 30)
    result = run(targets, created, [Event(at(MONDAY, 10, 30), "reply")], now=at(MONDAY, 12))
    assert result.clocks["first_response"].breached_at is None
    late = run(targets, created, [Event(at(MONDAY, 10, 31), "reply")], now=at(MONDAY, 12))
    assert late.clocks["first_response"].breached_at == at(MONDAY, 10, 30)
    waiting = run(targets, created, [], now=at(MONDAY, 10, 30))
    assert waiting.clocks["first_response"].breached_at is None
    assert waiting.state != "breached"


def test_clocks_pause_while_pending_and_resume_when_the_customer_answers():
    targets = Targets(first_response=240, resolution=600)
    created = at(MONDAY, 9)
    events = [
        Event(created, "customer"),
        Event(at(MONDAY, 10), "status", "pending"),  # waiting on the customer
        Event(at(MONDAY, 15), "customer"),
        Event(at(MONDAY, 15), "status", "open"),  # the answer wakes the ticket
        Event(at(MONDAY, 16), "reply"),
    ]
    paused = run(targets, created, events[:2], now=at(MONDAY, 14))
    assert paused.state == "paused"
    assert paused.clocks["first_response"].running is False
    assert paused.clocks["first_response"].due is None  # no due time while paused
    assert paused.paused_minutes == 240
    result = run(targets, created, events, now=at(TUESDAY, 10))
    assert result.clocks["first_response"].elapsed == 120  # 09-10 and 15-16
    assert result.paused_minutes == 300
    resolution = result.clocks["resolution"]
    assert (resolution.elapsed, resolution.running) == (180 + 60, True)
    assert resolution.due == at(TUESDAY, 16)


def test_reopening_resumes_the_resolution_clock_with_its_history():
    targets = Targets(first_response=None, resolution=480)
    created = at(MONDAY, 9)
    events = [
        Event(created, "customer"),
        Event(at(MONDAY, 13), "status", "resolved"),
        Event(at(MONDAY, 16), "status", "closed"),
        Event(at(TUESDAY, 10), "customer"),
        Event(at(TUESDAY, 10), "status", "open"),  # the customer's reply reopens
    ]
    resolved = run(targets, created, events[:3], now=at(MONDAY, 18))
    clock = resolved.clocks["resolution"]
    assert (clock.elapsed, clock.running, clock.stopped_at) == (240, False, at(MONDAY, 13))
    assert resolved.resolved_at == at(MONDAY, 13)  # when resolved, not when closed
    assert resolved.state == "met"
    reopened = run(targets, created, events, now=at(TUESDAY, 11))
    clock = reopened.clocks["resolution"]
    assert (clock.elapsed, clock.running) == (240 + 60, True)
    assert clock.due == at(TUESDAY, 14)
    assert reopened.resolved_at is None


def test_closing_a_resolved_ticket_keeps_the_resolution_instant():
    """Regression: resolved_at used to move to the close, shifting report periods."""
    targets = Targets(first_response=None, resolution=480)
    created = at(MONDAY, 9)
    events = [
        Event(at(MONDAY, 10), "status", "resolved"),
        Event(at(TUESDAY, 9), "status", "closed"),
    ]
    result = run(targets, created, events, now=at(TUESDAY, 12))
    assert result.resolved_at == at(MONDAY, 10)
    assert result.clocks["resolution"].stopped_at == at(MONDAY, 10)


def test_next_response_runs_after_each_customer_message():
    targets = Targets(first_response=60, resolution=None, next_response=60)
    created = at(MONDAY, 9)
    events = [
        Event(created, "customer"),
        Event(at(MONDAY, 9, 30), "reply"),
        Event(at(MONDAY, 10), "customer"),  # cycle 1: answered late at 11:30
        Event(at(MONDAY, 10, 15), "customer"),  # same cycle
        Event(at(MONDAY, 11, 30), "reply"),
        Event(at(MONDAY, 12), "customer"),  # cycle 2: answered in time
        Event(at(MONDAY, 12, 20), "reply"),
        Event(at(MONDAY, 16, 30), "customer"),  # cycle 3: open over the night
    ]
    result = run(targets, created, events, now=at(MONDAY, 17, 30))
    clock = result.clocks["next_response"]
    assert result.next_response_started == at(MONDAY, 16, 30)
    assert (clock.elapsed, clock.running, clock.due) == (30, True, at(TUESDAY, 9, 30))
    assert clock.breached_at is None  # the current cycle is fine ...
    assert result.next_response_breached_at == at(MONDAY, 11)  # ... the first one was not
    assert result.next_response_answered == 2
    assert result.breached and result.state == "running"


def test_customer_messages_before_the_first_reply_start_no_next_response():
    targets = Targets(first_response=60, resolution=None, next_response=60)
    created = at(MONDAY, 9)
    events = [Event(created, "customer"), Event(at(MONDAY, 9, 10), "customer")]
    result = run(targets, created, events, now=at(MONDAY, 9, 20))
    assert "next_response" not in result.clocks


def test_warning_threshold_defaults_to_80_percent_and_can_change():
    created = at(MONDAY, 9)
    default = run(Targets(first_response=100, resolution=None), created, [], now=at(MONDAY, 10, 19))
    assert default.clocks["first_response"].warn_at == at(MONDAY, 10, 20)
    assert default.state == "running"
    assert run(Targets(100, None), created, [], now=at(MONDAY, 10, 20)).state == "due_soon"
    half = Targets(first_response=100, resolution=None, warn_percent=50)
    assert run(half, created, [], now=at(MONDAY, 9, 50)).state == "due_soon"


def test_calendar_minute_targets_ignore_the_business_hours():
    targets = Targets(first_response=120, resolution=24 * 60, first_response_business=False)
    created = at(FRIDAY, 16, 30)
    result = run(targets, created, [], now=at(FRIDAY, 17))
    assert result.clocks["first_response"].due == at(FRIDAY, 18, 30)
    assert result.clocks["resolution"].due == at(FRIDAY, 16, 30) + timedelta(days=5)  # Wed
    later = run(targets, created, [], now=at(FRIDAY + timedelta(days=1), 12))
    assert later.clocks["first_response"].breached_at == at(FRIDAY, 18, 30)
    assert later.clocks["first_response"].elapsed == 19.5 * 60
    assert later.clocks["resolution"].elapsed == 30  # Friday 16:30-17:00 only


def test_calendar_minutes_follow_the_wall_clock_over_dst():
    """A 24-hour calendar-time target across Berlin's spring change is 24 real hours."""
    berlin = Calendar.office_hours("Europe/Berlin")
    created = datetime(2026, 3, 28, 12, tzinfo=UTC)
    targets = Targets(first_response=24 * 60, resolution=None, first_response_business=False)
    result = run(targets, created, [], now=created, calendar=berlin)
    assert result.clocks["first_response"].due == created + timedelta(hours=24)


def test_no_policy_targets_means_no_clocks():
    result = compute(Targets(None, None), OFFICE, at(MONDAY, 9), [], now=at(MONDAY, 10))
    assert result.clocks == {} and result.state == "none" and not result.breached


def test_events_after_now_are_not_seen():
    targets = Targets(first_response=60, resolution=None)
    created = at(MONDAY, 9)
    result = run(targets, created, [Event(at(MONDAY, 9, 30), "reply")], now=at(MONDAY, 9, 20))
    assert result.first_response_at is None
    assert result.clocks["first_response"].running
