"""Escalation: the worker's periodic job that finds clocks coming due or breached,
tells people through the outbox and writes the event into the ticket's history.

A warning goes to the assignee (or, if none, the queue's agents); a breach
also goes to the managers. Each warning and breach is sent once per clock
(once per cycle for next response). A ticket whose subject cannot go into a
mail header (CR/LF) is escalated in its history only, and logged.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.mail.compose import HeaderInjection, Outgoing, build, render, reply_subject
from helpdesk.mail.messageid import make_message_id
from helpdesk.models import Ticket, TicketEvent, TicketSla, User, user_queues
from helpdesk.outbound.outbox import queue_mail, suppressed
from helpdesk.settings import Settings
from helpdesk.sla.clocks import ClockState, SlaResult
from helpdesk.sla.service import escalation_key, next_check, refresh_with_result

log = logging.getLogger(__name__)

LABELS = {
    "first_response": "First response",
    "next_response": "Next response",
    "resolution": "Resolution",
}


def escalate(session: Session, *, settings: Settings, now: datetime, limit: int = 200) -> int:
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
            _check(session, ticket, row, result, name, clock, settings=settings, now=now)
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
    settings: Settings,
    now: datetime,
) -> None:
    if not clock.running:
        # Breached, then stopped before this job ran: history only, nobody to chase.
        key = escalation_key(name, "breach", result)
        if clock.breached_at is not None and key not in (row.escalations or []):
            row.escalations = [*(row.escalations or []), key]
            _event(session, ticket, "breach", name, clock, now)
        return
    if clock.breached_at is not None:
        level = "breach"
    elif clock.warn_at is not None and clock.warn_at <= now:
        level = "warning"
    else:
        return
    key = escalation_key(name, level, result)
    if key in (row.escalations or []):
        return
    row.escalations = [*(row.escalations or []), key]
    _event(session, ticket, level, name, clock, now)
    recipients = _recipients(session, ticket, breach=level == "breach")
    _notify(session, ticket, recipients, name, level, clock, settings=settings, now=now)
    log.info("ticket %s: %s %s", ticket.number, LABELS[name].lower(), level)


def _event(
    session: Session, ticket: Ticket, level: str, name: str, clock: ClockState, now: datetime
) -> None:
    session.add(
        TicketEvent(
            ticket_id=ticket.id,
            actor_id=None,
            kind=f"sla_{level}",
            old_value=LABELS[name],
            new_value=(clock.due.isoformat() if clock.due else ""),
            created_at=now,
        )
    )


def _recipients(session: Session, ticket: Ticket, *, breach: bool) -> list[User]:
    if ticket.assignee is not None and ticket.assignee.active:
        people = [ticket.assignee]
    else:
        stmt = (
            select(User)
            .join(user_queues, user_queues.c.user_id == User.id)
            .where(user_queues.c.queue_id == ticket.queue_id, User.active)
        )
        people = list(session.scalars(stmt))
    if breach:
        people += list(session.scalars(select(User).where(User.role == "manager", User.active)))
    unique = {user.id: user for user in people}
    return sorted(unique.values(), key=lambda u: u.email)


def _notify(
    session: Session,
    ticket: Ticket,
    recipients: list[User],
    name: str,
    level: str,
    clock: ClockState,
    *,
    settings: Settings,
    now: datetime,
) -> None:
    skip = suppressed(session, [user.email for user in recipients])
    title = f"SLA {'breached' if level == 'breach' else 'due soon'}: {LABELS[name]}"
    try:
        tag = reply_subject(ticket.subject, settings.subject_tag_prefix, ticket.number)[4:]
    except HeaderInjection as exc:
        # Only a direct database edit puts CR/LF into a ticket subject; the job goes on.
        log.warning("ticket %s: %s escalation skipped (%s)", ticket.number, level, exc)
        return
    subject = f"{title}: {tag}"
    for user in recipients:
        if user.email in skip:
            continue
        out = Outgoing(
            from_address=ticket.queue.email_address,
            from_name=f"{settings.sender_name} ({ticket.queue.name})",
            to=[user.email],
            subject=subject,
            message_id=make_message_id(settings.secret_key, ticket.number, settings.mail_domain),
            text=render(
                "email/sla_escalation.txt",
                ticket=ticket,
                user=user,
                title=title,
                clock=clock,
                label=LABELS[name],
                level=level,
                settings=settings,
            ),
            automatic=True,
            loop_marker=settings.mail_domain,
            date=now,
        )
        queue_mail(session, ticket, build(out), out, purpose=f"escalation:{level}", now=now)
