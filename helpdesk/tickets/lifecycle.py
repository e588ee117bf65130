"""Tickets: numbering, opening, appending inbound messages, reopening."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from helpdesk.mail.parse import InboundEmail
from helpdesk.models import Attachment, Contact, Counter, Message, Queue, Ticket, TicketCC
from helpdesk.tickets import history

REOPENABLE = ("resolved", "closed")
# Ticket.number is a 32-bit integer column.
MAX_NUMBER = 2**31 - 1


def next_number(session: Session) -> int:
    """The next public ticket number; gapless, safe across processes."""
    stmt = (
        update(Counter)
        .where(Counter.name == "ticket_number")
        .values(value=Counter.value + 1)
        .returning(Counter.value)
    )
    number = session.execute(stmt).scalar_one_or_none()
    if number is None:
        session.add(Counter(name="ticket_number", value=1))
        session.flush()
        number = 1
    return number


def by_number(session: Session, number: int) -> Ticket | None:
    """The ticket with this public number; None for a number no ticket can have.

    Numbers come from mail (subject tags), so they are checked against the
    32-bit column first: PostgreSQL refuses to compare with a larger value.
    """
    if not 0 < number <= MAX_NUMBER:
        return None
    return session.scalars(select(Ticket).where(Ticket.number == number)).one_or_none()


def resolve_merges(session: Session, ticket: Ticket) -> Ticket:
    """Follow merged_into links to the surviving ticket (bounded against cycles)."""
    for _ in range(16):
        if ticket.merged_into_id is None:
            return ticket
        ticket = session.get(Ticket, ticket.merged_into_id) or ticket
    return ticket


def open_ticket(
    session: Session, *, queue: Queue, requester: Contact, subject: str, now: datetime
) -> Ticket:
    ticket = Ticket(
        number=next_number(session),
        queue=queue,
        requester=requester,
        subject=subject[:998],
        status="new",
        priority="normal",
        created_at=now,
        updated_at=now,
    )
    session.add(ticket)
    return ticket


def add_cc(session: Session, ticket: Ticket, contact: Contact) -> None:
    if contact.id == ticket.requester_id:
        return
    if any(link.contact_id == contact.id for link in ticket.cc_links):
        return
    ticket.cc_links.append(TicketCC(contact=contact))


def add_inbound_message(
    session: Session,
    ticket: Ticket,
    mail: InboundEmail,
    *,
    raw_mail_id: int | None,
    contact: Contact | None,
    author_id: int | None = None,
    flags: list[str],
    also_addressed: list[str],
    now: datetime,
) -> Message:
    message = Message(
        ticket=ticket,
        raw_mail_id=raw_mail_id,
        kind="inbound",
        message_id=mail.message_id,
        in_reply_to=" ".join(mail.in_reply_to),
        references_header=" ".join(mail.references),
        from_address=mail.from_address,
        from_name=mail.from_name[:200],
        to_addresses=[address for _, address in mail.to],
        cc_addresses=[address for _, address in mail.cc],
        reply_to=mail.reply_to,
        subject=mail.subject,
        sent_at=mail.date,
        text_body=mail.text,
        html_body=mail.html,
        flags=sorted(flags),
        also_addressed=also_addressed,
        contact_id=contact.id if contact else None,
        author_id=author_id,
        created_at=now,
    )
    for part in mail.attachments:
        message.attachments.append(
            Attachment(
                filename=part.filename,
                content_type=part.content_type[:255],
                size=len(part.data),
                sha256=part.sha256,
                content_id=part.content_id,
                inline=part.inline,
                data=part.data,
            )
        )
    session.add(message)
    ticket.updated_at = now
    return message


def record_customer_reply(
    session: Session, ticket: Ticket, *, automated: bool, now: datetime
) -> None:
    """A customer wrote on an existing ticket: reopen or wake it, unless a robot wrote.

    The status change goes into the ticket's history, where SLA clocks read it.
    """
    if automated:
        return
    if ticket.status in (*REOPENABLE, "pending"):
        old = ticket.status
        history.record(session, ticket, "status", actor=None, old=old, new="open", now=now)
        ticket.status = "open"
        ticket.resolved_at = None
        ticket.closed_at = None
    ticket.updated_at = now
