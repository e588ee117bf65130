"""Business-calendar arithmetic against a brute-force, minute-by-minute reference.

The reference is the definition in ``helpdesk.sla.calendar``, read literally:
an instant is working time when its local wall-clock time lies in a working
range of some local date that is not a holiday (a range may end past 1440, a
shift past midnight belonging to the date it starts on). It looks at every
minute on its own, through ``zoneinfo``, so it shares no code with the
module's per-stretch arithmetic. Hypothesis draws calendars (several zones,
several ranges a day, shifts past midnight, holidays) and minute-aligned
instants around the 2026 DST changes.
"""

from __future__ import annotations

import itertools
import os
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpdesk.sla.calendar import (
    Calendar,
    add_business_minutes,
    business_minutes,
    progress,
    working_intervals,
)

MINUTE = timedelta(minutes=1)

# The 2026 offset changes, in UTC (checked against zoneinfo below).
CHANGES = {
    "Europe/Berlin": [datetime(2026, 3, 29, 1, tzinfo=UTC), datetime(2026, 10, 25, 1, tzinfo=UTC)],
    "America/New_York": [
        datetime(2026, 3, 8, 7, tzinfo=UTC),
        datetime(2026, 11, 1, 6, tzinfo=UTC),
    ],
    "Australia/Lord_Howe": [  # a 30-minute DST shift
        datetime(2026, 4, 4, 15, tzinfo=UTC),
        datetime(2026, 10, 3, 15, 30, tzinfo=UTC),
    ],
}
ANCHORS = [(zone, moment) for zone, moments in CHANGES.items() for moment in moments] + [
    ("UTC", datetime(2026, 3, 29, 1, tzinfo=UTC)),
    ("Asia/Kathmandu", datetime(2026, 7, 3, 12, tzinfo=UTC)),  # UTC+05:45
]

# Modest by default so the suite stays fast; raise it for a deeper search.
EXAMPLES = int(os.environ.get("HELPDESK_TEST_SLA_EXAMPLES", "60"))
HYPOTHESIS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# --- The reference -----------------------------------------------------------------


class Reference:
    """Working minutes of a calendar, decided one minute at a time."""

    def __init__(self, calendar: Calendar) -> None:
        self.calendar = calendar
        self.zone = ZoneInfo(calendar.timezone)
        self.cache: dict[datetime, bool] = {}

    def working(self, moment: datetime) -> bool:
        """Is the minute starting at ``moment`` (minute-aligned) working time?"""
        known = self.cache.get(moment)
        if known is not None:
            return known
        wall = moment.astimezone(self.zone).replace(tzinfo=None)
        found = False
        for back in (0, 1):  # today's ranges, or yesterday's shift past midnight
            day = wall.date() - timedelta(days=back)
            if day in self.calendar.holidays:
                continue
            midnight = datetime.combine(day, time())
            for start, end in self.calendar.weekly[day.weekday()]:
                if midnight + start * MINUTE <= wall < midnight + end * MINUTE:
                    found = True
        self.cache[moment] = found
        return found

    def minutes(self, start: datetime, end: datetime) -> list[datetime]:
        """The working minutes in [start, end), each by its first instant."""
        out, moment = [], start
        while moment < end:
            if self.working(moment):
                out.append(moment)
            moment += MINUTE
        return out

    def count(self, start: datetime, end: datetime) -> int:
        return len(self.minutes(start, end))

    def add(self, start: datetime, minutes: float, limit: datetime) -> datetime | None:
        """The earliest t with ``minutes`` working minutes in [start, t), or None
        when that lies beyond ``limit``."""
        if minutes <= 0:
            return start
        used, moment = 0, start
        while moment < limit:
            if self.working(moment):
                if used < minutes <= used + 1:
                    return moment + (minutes - used) * MINUTE
                used += 1
            moment += MINUTE
        return None

    def progress(
        self,
        running: list[tuple[datetime, datetime | None]],
        target: float,
        now: datetime,
        limit: datetime,
    ) -> tuple[int, datetime | None, bool]:
        """Minutes used over the running intervals up to ``now``, and the instant
        the target was (or, running on after ``now``, will be) reached."""
        used, breach = 0, None
        for a, b in running:
            moment, end = a, (now if b is None else min(b, now))
            while moment < end:
                if self.working(moment):
                    if breach is None and used < target <= used + 1:
                        breach = moment + (target - used) * MINUTE
                    used += 1
                moment += MINUTE
        is_running = bool(running) and running[-1][1] is None
        if breach is None and is_running:
            left, moment = used, max(now, running[-1][0])
            while breach is None and moment < limit:
                if self.working(moment):
                    if left < target <= left + 1:
                        breach = moment + (target - left) * MINUTE
                    left += 1
                moment += MINUTE
        return used, breach, is_running


# --- Strategies --------------------------------------------------------------------

NOTABLE_RANGES = [
    (0, 1440),  # all day
    (9 * 60, 17 * 60),  # office hours
    (60, 240),  # 01:00-04:00, across both European DST changes
    (120, 180),  # 02:00-03:00, skipped or doubled
    (90, 150),  # Lord Howe's half hour
    (22 * 60, 30 * 60),  # night shift to 06:00 next day
    (23 * 60, 2880),  # to midnight of the day after
    (1439, 1441),  # two minutes across midnight
]


@st.composite
def working_range(draw: st.DrawFn) -> tuple[int, int]:
    if draw(st.booleans()):
        return draw(st.sampled_from(NOTABLE_RANGES))
    start = draw(st.integers(0, 1439))
    return start, draw(st.integers(start + 1, min(2880, start + 1440)))


@st.composite
def scenario(draw: st.DrawFn) -> tuple[Calendar, datetime]:
    """A calendar and an anchor instant near one of its zone's offset changes."""
    zone, anchor = draw(st.sampled_from(ANCHORS))
    day = st.lists(working_range(), max_size=3).map(tuple)
    weekly = tuple(draw(day) for _ in range(7))
    local_day = anchor.astimezone(ZoneInfo(zone)).date()
    offsets = draw(st.sets(st.integers(-4, 8), max_size=4))
    holidays = frozenset(local_day + timedelta(days=n) for n in offsets)
    return Calendar(zone, weekly, holidays), anchor


def minutes_around(anchor: datetime, before: int, after: int) -> st.SearchStrategy[datetime]:
    return st.integers(-before, after).map(lambda n: anchor + n * MINUTE)


# --- Properties --------------------------------------------------------------------


@HYPOTHESIS
@given(scenario(), st.data())
def test_working_time_matches_minute_by_minute(case, data):
    calendar, anchor = case
    start = data.draw(minutes_around(anchor, 3 * 1440, 1440), label="start")
    end = start + data.draw(st.integers(0, 3 * 1440), label="span") * MINUTE
    reference = Reference(calendar)
    expected = reference.minutes(start, end)

    intervals = working_intervals(calendar, start, end)
    # Sorted, disjoint, merged (no two touching), inside the window.
    for a, b in intervals:
        assert start <= a < b <= end
    for (_, b), (a, _) in itertools.pairwise(intervals):
        assert b < a
    covered = []
    for a, b in intervals:
        moment = a
        while moment < b:
            covered.append(moment)
            moment += MINUTE
    assert covered == expected
    assert business_minutes(calendar, start, end) == len(expected)
    assert business_minutes(calendar, end, start) == 0


@HYPOTHESIS
@given(scenario(), st.data())
def test_adding_business_minutes_finds_the_earliest_instant(case, data):
    calendar, anchor = case
    start = data.draw(minutes_around(anchor, 3 * 1440, 1440), label="start")
    reference = Reference(calendar)
    window_end = start + 5 * 1440 * MINUTE
    available = reference.count(start, window_end)
    whole = data.draw(st.integers(0, available), label="minutes")
    minutes = whole - data.draw(st.sampled_from([0, 0, 0.5, 0.25]), label="fraction")
    if minutes < 0:
        minutes = 0
    expected = reference.add(start, minutes, window_end)
    assert expected is not None
    got = add_business_minutes(calendar, start, minutes)
    assert got == expected
    assert business_minutes(calendar, start, got) == pytest.approx(minutes, abs=1e-9)


@HYPOTHESIS
@given(scenario(), st.data())
def test_progress_over_pauses_matches_minute_by_minute(case, data):
    """A clock running over several intervals (paused in between), the last
    one possibly still open: minutes used and the breach instant."""
    calendar, anchor = case
    cursor = data.draw(minutes_around(anchor, 3 * 1440, 1440), label="created")
    running: list[tuple[datetime, datetime | None]] = []
    for _ in range(data.draw(st.integers(1, 4), label="intervals")):
        a = cursor + data.draw(st.integers(0, 900), label="gap") * MINUTE
        b = a + data.draw(st.integers(1, 1200), label="length") * MINUTE
        running.append((a, b))
        cursor = b
    if data.draw(st.booleans(), label="still running"):
        running[-1] = (running[-1][0], None)
    last_start = running[-1][0]
    now = last_start + data.draw(st.integers(0, 2 * 1440), label="now") * MINUTE
    if running[-1][1] is not None:
        now = max(now, running[-1][1] - data.draw(st.integers(0, 600), label="now early") * MINUTE)
    target = data.draw(st.integers(1, 1500), label="target") + data.draw(
        st.sampled_from([0, 0.5]), label="half"
    )
    limit = now + 20 * 1440 * MINUTE
    used, breach, is_running = Reference(calendar).progress(running, target, now, limit)

    got = progress(calendar, running, target, now=now)
    assert got.elapsed == used
    assert got.running is is_running
    if breach is None:
        assert got.breach_at is None or got.breach_at >= limit
    else:
        assert got.breach_at == breach


# --- Worked examples ---------------------------------------------------------------


def at(zone: str, *args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def test_the_reference_knows_the_2026_changes():
    for zone, moments in CHANGES.items():
        for moment in moments:
            before = (moment - MINUTE).astimezone(ZoneInfo(zone)).utcoffset()
            assert before != moment.astimezone(ZoneInfo(zone)).utcoffset()


def test_a_night_range_over_the_dst_changes_in_berlin():
    night = ((60, 240),)  # 01:00 to 04:00 local
    calendar = Calendar("Europe/Berlin", (night,) * 7)
    spring = business_minutes(
        calendar, at("Europe/Berlin", 2026, 3, 29, 0), at("Europe/Berlin", 2026, 3, 29, 5)
    )
    autumn = business_minutes(
        calendar, at("Europe/Berlin", 2026, 10, 25, 0), at("Europe/Berlin", 2026, 10, 25, 5)
    )
    assert (spring, autumn) == (120, 240)  # 02:00-03:00 skipped, then lived twice
    assert (
        Reference(calendar).count(
            at("Europe/Berlin", 2026, 10, 25, 0), at("Europe/Berlin", 2026, 10, 25, 5)
        )
        == 240
    )


def test_always_counts_elapsed_minutes_across_dst():
    calendar = Calendar.always("America/New_York")
    start, end = at("America/New_York", 2026, 3, 7, 12), at("America/New_York", 2026, 3, 9, 12)
    assert business_minutes(calendar, start, end) == (end - start) / MINUTE == 47 * 60
    assert add_business_minutes(calendar, start, 47 * 60) == end


def test_a_shift_past_midnight_belongs_to_its_start_date():
    friday_night = ((), (), (), (), ((22 * 60, 30 * 60),), (), ())
    calendar = Calendar("UTC", friday_night)
    friday, saturday = date(2026, 5, 15), date(2026, 5, 16)
    start, end = datetime(2026, 5, 15, tzinfo=UTC), datetime(2026, 5, 17, tzinfo=UTC)
    assert business_minutes(calendar, start, end) == 8 * 60
    holiday_friday = Calendar("UTC", friday_night, frozenset({friday}))
    assert business_minutes(holiday_friday, start, end) == 0
    holiday_saturday = Calendar("UTC", friday_night, frozenset({saturday}))
    assert business_minutes(holiday_saturday, start, end) == 8 * 60


def test_seconds_count_as_fractions_of_a_minute():
    calendar = Calendar.office_hours("UTC")
    start = datetime(2026, 5, 15, 16, 59, 30, tzinfo=UTC)  # a Friday
    assert business_minutes(calendar, start, start + timedelta(minutes=3)) == 0.5
    assert add_business_minutes(calendar, start, 1) == datetime(2026, 5, 18, 9, 0, 30, tzinfo=UTC)


def test_a_calendar_without_working_time_never_comes_due():
    calendar = Calendar("UTC")
    assert add_business_minutes(calendar, datetime(2026, 1, 1, tzinfo=UTC), 60) is None
    clock = progress(
        calendar,
        [(datetime(2026, 1, 1, tzinfo=UTC), None)],
        60,
        now=datetime(2026, 1, 2, tzinfo=UTC),
    )
    assert (clock.elapsed, clock.breach_at, clock.running) == (0, None, True)


@pytest.mark.parametrize(
    "weekly",
    [
        ((),) * 6,
        (((1440, 1500),),) + ((),) * 6,
        (((600, 600),),) + ((),) * 6,
        (((600, 2881),),) + ((),) * 6,
        (((-1, 60),),) + ((),) * 6,
    ],
)
def test_bad_weekly_hours_are_refused(weekly):
    with pytest.raises(ValueError):
        Calendar("UTC", weekly)


def test_zero_minutes_are_the_start_itself():
    """Regression: zero minutes used to give the next working instant (or None)."""
    saturday = datetime(2026, 5, 16, 12, tzinfo=UTC)
    assert add_business_minutes(Calendar.office_hours("UTC"), saturday, 0) == saturday
    assert add_business_minutes(Calendar("UTC"), saturday, 0) == saturday


def test_instants_in_any_time_zone_give_the_same_answer():
    """Regression: a Berlin-aware `now` was shifted by its offset twice (140 minutes
    counted for 20), so a ticket moved at 16:50 looked breached."""
    from zoneinfo import ZoneInfo

    from helpdesk.sla.calendar import Calendar as Cal
    from helpdesk.sla.calendar import add_business_minutes as add
    from helpdesk.sla.calendar import business_minutes as minutes

    berlin = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 5, 15, 16, 30, tzinfo=berlin)
    end = datetime(2026, 5, 15, 16, 50, tzinfo=berlin)
    for calendar in (Cal.always("Europe/Berlin"), Cal.office_hours("Europe/Berlin")):
        assert minutes(calendar, start, end) == 20
        assert minutes(calendar, start.astimezone(UTC), end) == 20
        assert add(calendar, start, 20) == end
