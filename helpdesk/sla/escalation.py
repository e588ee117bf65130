"""Escalation: the worker's periodic job that finds clocks coming due or breached
and records each warning and breach through the ticket lifecycle
(``lifecycle.record_sla``: a history row and an ``SlaWarning`` /
``SlaBreached`` event). Telling people is a subscriber's work
(``helpdesk.outbound.notifications.EscalationMail``).

Each warning and breach is recorded once per clock (once per cycle for next
response), however often the job runs. A breach of a clock that had already
stopped is recorded with ``running=False`` (nobody to chase).
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.models import Ticket, TicketSla
from helpdesk.sla.clocks import ClockState, SlaResult
from helpdesk.sla.service import escalation_key, next_check, refresh_with_result
from helpdesk.tickets import lifecycle

log = logging.getLogger(__name__)

LABELS = {
    "first_response": "First response",
    "next_response": "Next response",
    "resolution": "Resolution",
}


def escalate(session: Session, *, now: datetime, limit: int = 200) -> int:
    """Handle tickets whose next SLA check is due; returns how many were looked at."""
    stmt = (
        select(TicketSla)
        .where(TicketSla.next_check_at.is_not(None), TicketSla.next_check_at <= now)
        .order_by(TicketSla.next_check_at)
        .limit(limit)
        # OF: the policy is joined in eagerly (an outer join), which PostgreSQL cannot lock.
        .with_for_update(skip_locked=True, of=TicketSla)
    )
    rows = list(session.scalars(stmt))
    for row in rows:
        ticket = session.get(Ticket, row.ticket_id)
        if ticket is None:
            continue
        row, result = refresh_with_result(session, ticket, now=now)
        for name, clock in result.clocks.items():
            _check(session, ticket, row, result, name, clock, now=now)
        row.next_check_at = next_check(result, now)  # made: on to the next threshold
    return len(rows)


def _check(
    session: Session,
    ticket: Ticket,
    row: TicketSla,
    result: SlaResult,
    name: str,
    clock: ClockState,
    *,
    now: datetime,
) -> None:
    if not clock.running:
        # Breached, then stopped before this job ran: history only, nobody to chase.
        if clock.breached_at is None:
            return
        level = "breach"
    elif clock.breached_at is not None:
        level = "breach"
    elif clock.warn_at is not None and clock.warn_at <= now:
        level = "warning"
    else:
        return
    key = escalation_key(name, level, result)
    if key in (row.escalations or []):
        return
    row.escalations = [*(row.escalations or []), key]
    lifecycle.record_sla(
        session, ticket, clock=name, label=LABELS[name], level=level, due=clock.due,
        target_minutes=clock.target, elapsed_minutes=clock.elapsed, running=clock.running,
        now=now,
    )  # fmt: skip
