"""The outbox service: queueing a mail about a ticket (an outbound message of its
thread plus an outbox row, or the row alone for mail to agents) in the
caller's transaction, and the delivery bookkeeping the worker uses.

Rows hold a ``TicketMail`` (``helpdesk.outbound.ticket_mail``), built into
bytes by the worker when it sends; delivery outcomes of thread messages are
events of the ticket lifecycle (``MessageSent``, ``MessageFailed``).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, undefer

from helpdesk.mail.display import prepare_html
from helpdesk.models import Attachment, Contact, Message, OutboxMail, Ticket
from helpdesk.outbound.ticket_mail import TicketMail
from helpdesk.tickets import lifecycle


def suppressed(session: Session, addresses: list[str]) -> set[str]:
    """Addresses that bounced permanently; outgoing mail skips them."""
    if not addresses:
        return set()
    rows = session.scalars(
        select(Contact.email).where(
            Contact.email.in_(addresses), Contact.bouncing_since.is_not(None)
        )
    )
    return set(rows)


def enqueue(
    session: Session,
    ticket: Ticket,
    mail: TicketMail,
    *,
    now: datetime,
    author_id: int | None = None,
    flags: tuple[str, ...] = (),
    bouncing: set[str] | None = None,
) -> tuple[Message, OutboxMail | None]:
    """Record the mail on the ticket and queue it (no row if every recipient is suppressed).

    ``bouncing``: the suppressed addresses among the recipients when the
    caller knows them (from the Contact rows it holds); otherwise they are
    looked up.
    """
    recipients = [*mail.to, *mail.cc]
    skip = suppressed(session, recipients) if bouncing is None else bouncing
    skipped = sorted({a for a in recipients if a in skip})
    mail.to = [a for a in mail.to if a not in skip]
    mail.cc = [a for a in mail.cc if a not in skip]
    message_flags = sorted({*flags, *(["suppressed"] if skipped else [])})
    message = Message(
        ticket=ticket,
        kind="outbound",
        message_id=mail.message_id,
        in_reply_to=mail.in_reply_to,
        references_header=" ".join(mail.references),
        from_address=mail.from_address,
        from_name=mail.from_name,
        to_addresses=mail.to,
        cc_addresses=mail.cc,
        reply_to=mail.reply_to,
        subject=mail.subject,
        sent_at=now,
        text_body=mail.text,
        html_body=mail.html,
        html_safe=prepare_html(mail.html) if mail.html else "",
        flags=message_flags + [f"skipped:{a}" for a in skipped],
        author_id=author_id,
        created_at=now,
    )
    # Kept on the message: the thread shows what was sent, the worker sends it from there.
    for filename, content_type, data in mail.attachments:
        message.attachments.append(
            Attachment(
                filename=filename,
                content_type=content_type[:255],
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                data=data,
            )
        )
    session.add(message)
    if not mail.to and not mail.cc:
        return message, None
    return message, queue_mail(session, ticket, mail, now=now, message=message)


def queue_mail(
    session: Session,
    ticket: Ticket | None,
    mail: TicketMail,
    *,
    now: datetime,
    message: Message | None = None,
) -> OutboxMail:
    """The outbox row alone (notifications are not messages of the thread)."""
    row = OutboxMail(
        ticket=ticket,
        message=message,
        purpose=mail.purpose,
        mail_from=mail.from_address,
        rcpt_tos=[*mail.to, *mail.cc],
        state="queued",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
        header_message_id=mail.message_id,
        spec=mail.to_json(),
    )
    session.add(row)
    return row


# --- Delivery bookkeeping, used by the worker -------------------------------

MAX_ATTEMPTS = 12
BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_MAX = timedelta(hours=6)
# How long a claimed row may stay 'sending' before another worker takes it
# over (the first one is presumed dead). The at-least-once window: a worker
# that dies after the relay said 250 but before record_sent committed makes
# the row due again after the lease, and it is sent a second time with the
# same Message-ID (which mail clients fold into one).
LEASE = timedelta(minutes=5)


def backoff(attempts: int) -> timedelta:
    """1, 2, 4, 8 ... minutes, capped at six hours."""
    return min(BACKOFF_BASE * (1 << max(attempts - 1, 0)), BACKOFF_MAX)


def claim_due(session: Session, *, now: datetime, limit: int = 20) -> list[OutboxMail]:
    """Claim up to ``limit`` due rows for this worker and count the attempt.

    On PostgreSQL the rows are locked with FOR UPDATE SKIP LOCKED, so several
    workers never claim the same row; on SQLite the caller's write
    transaction (BEGIN IMMEDIATE) serialises claimers. The caller commits
    before sending: the attempt is on record before any byte leaves.
    """
    stmt = (
        select(OutboxMail)
        .where(OutboxMail.state.in_(("queued", "sending")), OutboxMail.next_attempt_at <= now)
        .order_by(OutboxMail.next_attempt_at, OutboxMail.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        # The worker builds and sends the mail: load all it needs here, not row by row.
        .options(
            undefer(OutboxMail.content),
            selectinload(OutboxMail.message)
            .selectinload(Message.attachments)
            .undefer(Attachment.data),
        )
    )
    rows = list(session.scalars(stmt))
    for row in rows:
        row.state = "sending"
        row.attempts += 1
        row.next_attempt_at = now + LEASE
    return rows


def record_sent(session: Session, row: OutboxMail, *, now: datetime, note: str = "") -> None:
    row.state = "sent"
    row.sent_at = now
    row.last_error = note
    lifecycle.message_sent(session, row, now=now)


def record_failure(
    session: Session, row: OutboxMail, error: str, *, permanent: bool, now: datetime
) -> None:
    """A 5xx is final; a 4xx or a connection error is retried with backoff.

    A row another worker delivered meanwhile (after this one's lease ran out)
    stays sent: queueing it again would deliver it once more.
    """
    if row.state == "sent":
        return
    row.last_error = error[:2000]
    if permanent or row.attempts >= MAX_ATTEMPTS:
        row.state = "failed"
        lifecycle.message_failed(session, row, row.last_error, now=now)
    else:
        row.state = "queued"
        row.next_attempt_at = now + backoff(row.attempts)


def delivery_states(session: Session, message_ids: list[int]) -> dict[int, OutboxMail]:
    """The outbox row of each outbound message, for showing delivery on the ticket."""
    if not message_ids:
        return {}
    rows = session.scalars(select(OutboxMail).where(OutboxMail.message_id.in_(message_ids)))
    return {row.message_id: row for row in rows if row.message_id is not None}
