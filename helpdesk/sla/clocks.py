"""SLA clocks: first response, next response and resolution, computed from a
ticket's history under its policy and business calendar.

``compute`` is a pure function of the policy, the calendars and the ticket's
timeline (created, customer messages, agent replies, status changes), so the
clocks can always be recomputed: after a queue move the policy is re-chosen
and the clocks re-evaluated from the ticket's start, and a reopened ticket's
resolution clock resumes with its history intact.

Rules:
- every clock pauses while the ticket is ``pending`` (waiting on the customer);
- first response runs from creation until the first agent reply to the
  customer (notes and automatic acknowledgements do not count);
- next response runs from each customer message that arrives after the
  first response until the next agent reply;
- resolution runs while the ticket is new or open, stops at resolved/closed
  and resumes when it is reopened; the ticket was resolved when it last
  became resolved or closed (closing a resolved ticket keeps that instant).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from helpdesk.models.ticket import ACTIVE_STATUSES, DONE_STATUSES, WAITING_STATUSES
from helpdesk.sla.calendar import Calendar, Progress, business_minutes, progress

# Clocks run while a ticket is active and not waiting on the customer.
ACTIVE = tuple(s for s in ACTIVE_STATUSES if s not in WAITING_STATUSES)
DONE = DONE_STATUSES


@dataclass(frozen=True)
class Event:
    at: datetime
    kind: str  # customer, reply, status
    value: str = ""


@dataclass(frozen=True)
class Targets:
    """Minutes per clock (None: no target) and whether each counts business time."""

    first_response: int | None
    resolution: int | None
    next_response: int | None = None
    first_response_business: bool = True
    next_response_business: bool = True
    resolution_business: bool = True
    warn_percent: int = 80


@dataclass
class ClockState:
    target: float
    elapsed: float
    due: datetime | None  # breach instant, past or projected
    breached_at: datetime | None
    warn_at: datetime | None
    running: bool
    stopped_at: datetime | None = None


@dataclass
class SlaResult:
    clocks: dict[str, ClockState] = field(default_factory=dict)
    first_response_at: datetime | None = None
    resolved_at: datetime | None = None
    paused_minutes: float = 0.0
    state: str = "none"
    next_response_started: datetime | None = None
    # The first breach of any next-response cycle (the clock shows the current one).
    next_response_breached_at: datetime | None = None
    next_response_answered: int = 0  # cycles ended by an agent reply

    @property
    def breached(self) -> bool:
        return self.next_response_breached_at is not None or any(
            c.breached_at is not None for c in self.clocks.values()
        )


Span = tuple[datetime, datetime | None]


def _status_spans(
    created: datetime, events: list[Event]
) -> list[tuple[datetime, datetime | None, str]]:
    """Consecutive (from, to, status) spans from creation on; the last one is open."""
    spans: list[tuple[datetime, datetime | None, str]] = []
    status, since = "new", created
    for event in events:
        if event.kind == "status" and event.value != status:
            spans.append((since, event.at, status))
            status, since = event.value, event.at
    spans.append((since, None, status))
    return spans


def _clip(
    spans: list[tuple[datetime, datetime | None, str]], start: datetime, end: datetime | None
) -> list[Span]:
    """The parts of active (new/open) spans that lie in [start, end)."""
    out: list[Span] = []
    for a, b, status in spans:
        if status not in ACTIVE:
            continue
        lo = max(a, start)
        if b is None:
            hi = end
        elif end is None:
            hi = b
        else:
            hi = min(b, end)
        if hi is None or lo < hi:
            out.append((lo, hi))
    return out


def _state(
    calendar: Calendar,
    running: list[Span],
    target: float,
    warn_percent: int,
    now: datetime,
    stopped_at: datetime | None,
) -> ClockState:
    done: Progress = progress(calendar, running, target, now=now)
    warn: Progress = progress(calendar, running, target * warn_percent / 100, now=now)
    # Due at 10:30 means "by 10:30": an answer at 10:30 is in time, so a clock
    # breaches only once it has used more than its target.
    breached_at = done.breach_at if done.elapsed > target else None
    return ClockState(
        target=target,
        elapsed=done.elapsed,
        due=done.breach_at,
        breached_at=breached_at,
        warn_at=warn.breach_at,
        running=done.running,
        stopped_at=stopped_at,
    )


def compute(
    targets: Targets,
    business: Calendar,
    created: datetime,
    events: list[Event],
    *,
    now: datetime,
) -> SlaResult:
    """Every clock of one ticket at ``now``."""
    events = sorted((e for e in events if e.at <= now), key=lambda e: e.at)
    spans = _status_spans(created, events)
    wall = Calendar.always(business.timezone)
    result = SlaResult()
    result.paused_minutes = sum(
        business_minutes(business, a, b or now) for a, b, s in spans if s == "pending"
    )
    last_status = spans[-1][2]
    for since, _until, status in spans:
        # Resolved then closed is one resolution: it happened when it was resolved.
        if status not in DONE:
            result.resolved_at = None
        elif result.resolved_at is None:
            result.resolved_at = since

    replies = [e.at for e in events if e.kind == "reply"]
    first_reply = replies[0] if replies else None
    result.first_response_at = first_reply

    def calendar_for(flag: bool) -> Calendar:
        return business if flag else wall

    if targets.first_response is not None:
        running = _clip(spans, created, first_reply)
        result.clocks["first_response"] = _state(
            calendar_for(targets.first_response_business), running, targets.first_response,
            targets.warn_percent, now, first_reply,
        )  # fmt: skip

    if targets.next_response is not None and first_reply is not None:
        # Each customer message after a reply starts a cycle; the next reply ends it.
        cycles: list[Span] = []
        started: datetime | None = None
        for event in events:
            if event.kind == "customer" and event.at > first_reply and started is None:
                started = event.at
            elif event.kind == "reply" and started is not None:
                cycles.append((started, event.at))
                started = None
        if started is not None:
            cycles.append((started, None))
        calendar = calendar_for(targets.next_response_business)
        states = [
            _state(
                calendar, _clip(spans, a, b), targets.next_response, targets.warn_percent, now, b
            )
            for a, b in cycles
        ]
        result.next_response_answered = sum(1 for _a, b in cycles if b is not None)
        if states:
            result.next_response_started = cycles[-1][0]
            result.clocks["next_response"] = states[-1]
            result.next_response_breached_at = next(
                (state.breached_at for state in states if state.breached_at), None
            )

    if targets.resolution is not None:
        end = result.resolved_at
        running = _clip(spans, created, end)
        result.clocks["resolution"] = _state(
            calendar_for(targets.resolution_business), running, targets.resolution,
            targets.warn_percent, now, end,
        )  # fmt: skip

    result.state = _overall(result, last_status, now)
    return result


def _overall(result: SlaResult, status: str, now: datetime) -> str:
    if not result.clocks:
        return "none"
    running = [c for c in result.clocks.values() if c.running]
    if status == "pending":
        return "paused"
    if any(c.breached_at is not None for c in running):
        return "breached"
    if any(c.warn_at is not None and c.warn_at <= now for c in running):
        return "due_soon"
    if running:
        return "running"
    return "breached" if result.breached else "met"
