"""The outbox service: turning an outgoing mail into an outbound message of its
ticket plus an outbox row, in the caller's transaction. Delivery is the worker's.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.mail.compose import Outgoing, build
from helpdesk.models import Contact, Message, OutboxMail, Ticket


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
    out: Outgoing,
    *,
    purpose: str,
    now: datetime,
    author_id: int | None = None,
    flags: tuple[str, ...] = (),
) -> OutboxMail | None:
    """Record the mail on the ticket and queue it; None if every recipient is suppressed."""
    skip = suppressed(session, [*out.to, *out.cc])
    out.to = [a for a in out.to if a not in skip]
    out.cc = [a for a in out.cc if a not in skip]
    message_flags = sorted({*flags, *(["suppressed"] if skip else [])})
    out.date = out.date or now
    mime = build(out)
    message = Message(
        ticket=ticket,
        kind="outbound",
        message_id=out.message_id,
        in_reply_to=out.in_reply_to,
        references_header=" ".join(out.references),
        from_address=out.from_address,
        from_name=out.from_name,
        to_addresses=out.to,
        cc_addresses=out.cc,
        reply_to=out.reply_to,
        subject=out.subject,
        sent_at=now,
        text_body=out.text,
        html_body=out.html,
        flags=message_flags + [f"skipped:{a}" for a in sorted(skip)],
        author_id=author_id,
        created_at=now,
    )
    session.add(message)
    if not out.to and not out.cc:
        return None
    row = OutboxMail(
        ticket=ticket,
        message=message,
        purpose=purpose,
        mail_from=out.from_address,
        rcpt_tos=[*out.to, *out.cc],
        state="queued",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
        content=mime.as_bytes(),
    )
    session.add(row)
    return row
