"""What is said on a ticket: opening it, messages from outside, replies and notes.

The other half of the lifecycle (``helpdesk.tickets.lifecycle`` has the
fields); same rules: each call applies its change, writes history with the
actor and emits events to the session's subscribers, in the caller's
transaction.

- ``open_ticket(...)`` → ``TicketCreated`` (with its channel: mail, web,
  phone, api, portal). The acknowledgement, notifications and SLA clocks are
  the subscribers' work.
- ``receive_message(...)`` (mail or a portal message on an existing ticket)
  → ``MessageReceived``; a customer's message reopens a pending, resolved or
  closed ticket (``TicketUpdated``), an automated one never does.
- ``reply(...)`` → ``ReplyQueued`` (the mail is in the outbox, threaded under
  the customer's newest own message) and, for a new ticket or when asked,
  the status change (``TicketUpdated``).
- ``add_note(...)`` → ``NoteAdded``.
- ``acknowledgement_withheld(...)``: only a history row (no event).
- ``mail_requester(...)`` and ``notify(...)``: an automation rule's mail to
  the requester or to agents (history rows, no event).

A message from outside arrives as a ``NewMessage`` (``NewMessage.from_mail``
for parsed mail), so the portal and the API open tickets exactly as mail does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy.orm import Session

from helpdesk.mail.classify import is_automated
from helpdesk.mail.display import prepare_html
from helpdesk.mail.parse import InboundEmail
from helpdesk.models import (
    STATUSES,
    Attachment,
    Contact,
    Message,
    OutboxMail,
    Queue,
    Ticket,
    TicketCC,
    User,
)
from helpdesk.outbound import ticket_mail
from helpdesk.outbound.outbox import enqueue, queue_mail
from helpdesk.settings import Settings
from helpdesk.tickets.actors import AGENT, CUSTOMER, Actor, as_actor
from helpdesk.tickets.events import (
    CHANNELS,
    MessageReceived,
    NoteAdded,
    ReplyQueued,
    TicketCreated,
    TicketUpdated,
)
from helpdesk.tickets.lifecycle import TicketError, apply_status, next_number, reopens
from helpdesk.tickets.operation import Operation, operation


class Part(Protocol):
    """An attachment of a message from outside (``ParsedAttachment`` is one)."""

    filename: str
    content_type: str
    data: bytes
    content_id: str
    inline: bool

    @property
    def sha256(self) -> str: ...


@dataclass
class NewMessage:
    """A message from outside as it will be stored on the ticket."""

    from_address: str
    from_name: str = ""
    subject: str = ""
    text: str = ""
    html: str = ""
    # ``html`` already sanitised (``prepare_html``), when the caller has it.
    html_safe: str = ""
    message_id: str = ""
    in_reply_to: Sequence[str] = ()
    references: Sequence[str] = ()
    to: Sequence[str] = ()
    cc: Sequence[str] = ()
    reply_to: str = ""
    sent_at: datetime | None = None
    attachments: Sequence[Part] = ()
    flags: Sequence[str] = ()
    also_addressed: Sequence[str] = ()
    raw_mail_id: int | None = None

    @classmethod
    def from_mail(
        cls,
        mail: InboundEmail,
        *,
        raw_mail_id: int | None,
        flags: Sequence[str] = (),
        also_addressed: Sequence[str] = (),
    ) -> NewMessage:
        return cls(
            from_address=mail.from_address, from_name=mail.from_name, subject=mail.subject,
            text=mail.text, html=mail.html, html_safe=mail.html_safe,
            message_id=mail.message_id,
            in_reply_to=mail.in_reply_to, references=mail.references,
            to=[address for _, address in mail.to], cc=[address for _, address in mail.cc],
            reply_to=mail.reply_to, sent_at=mail.date, attachments=mail.attachments,
            flags=flags, also_addressed=also_addressed, raw_mail_id=raw_mail_id,
        )  # fmt: skip

    @property
    def automated(self) -> bool:
        return is_automated(list(self.flags))


@dataclass
class Opening:
    """What a new ticket starts with besides its queue, requester and subject."""

    channel: str = "mail"
    message: NewMessage | None = None
    ccs: Sequence[Contact] = ()
    # Addresses the message named that did not become CCs (over the cap, or an
    # unproven sender): kept on the message, recorded in the history, never mailed.
    ccs_not_added: Sequence[str] = ()
    acknowledge: bool = True
    follow_up_of: Ticket | None = None


def open_ticket(
    session: Session,
    *,
    queue: Queue,
    requester: Contact,
    subject: str,
    actor: Actor | User,
    now: datetime,
    opening: Opening | None = None,
) -> Ticket:
    """A new ticket, with its first message and CCs; emits ``TicketCreated``.

    The requester gets an acknowledgement unless ``opening.acknowledge`` is
    False or the first message is automated.
    """
    opening = opening or Opening()
    if opening.channel not in CHANNELS:
        raise TicketError(f"channel must be one of {', '.join(CHANNELS)}")
    with operation(session, actor, now) as op:
        ticket = Ticket(
            number=next_number(session),
            queue=queue,
            requester=requester,
            subject=subject[:998],
            status="new",
            priority="normal",
            created_at=now,
            updated_at=now,
            follow_up_of=opening.follow_up_of,
            channel=opening.channel,
            status_changed_at=now,
        )
        session.add(ticket)
        message = _add_message(op, ticket, opening.message) if opening.message else None
        automated = opening.message.automated if opening.message else False
        if opening.message is not None and message is not None and not automated:
            _note_message_time(op, ticket, opening.message)
        _add_ccs(ticket, opening.ccs, requester)
        op.history(ticket, "created", new=opening.channel)
        _record_not_added(op, ticket, opening.ccs_not_added)
        op.emit(
            TicketCreated(
                ticket=ticket, at=now, cause=op.cause, channel=opening.channel, message=message,
                automated=automated, acknowledge=opening.acknowledge and not automated,
            )
        )  # fmt: skip
    return ticket


def receive_message(
    session: Session,
    ticket: Ticket,
    new: NewMessage,
    *,
    actor: Actor | User,
    now: datetime,
    ccs: Sequence[Contact] = (),
    ccs_not_added: Sequence[str] = (),
    channel: str = "mail",
) -> Message:
    """A message from outside on an existing ticket (a customer, or an agent's own mail).

    A customer's message that is not automated reopens a ticket that was
    pending, resolved or closed, and its new CCs join the ticket
    (``ccs_not_added``: as for ``Opening``).
    """
    actor = as_actor(actor)
    automated = new.automated
    with operation(session, actor, now) as op:
        message = _add_message(op, ticket, new)
        ticket.updated_at = now
        if not automated:
            _note_message_time(op, ticket, new)
        reopened = None
        if actor.kind == CUSTOMER and not automated and reopens(ticket):
            reopened = apply_status(op, ticket, "open")
        if not automated:
            _add_ccs(ticket, ccs, ticket.requester)
        _record_not_added(op, ticket, ccs_not_added)
        op.emit(
            MessageReceived(
                ticket=ticket, at=now, cause=op.cause, message=message, channel=channel,
                automated=automated, from_agent=actor.kind == AGENT,
            )
        )  # fmt: skip
        if reopened is not None:
            op.emit(TicketUpdated(ticket=ticket, at=now, cause=op.cause,
                                  changes={"status": reopened}))  # fmt: skip
    return message


def reply(
    session: Session,
    ticket: Ticket,
    *,
    actor: Actor | User,
    text: str,
    settings: Settings,
    now: datetime,
    attachments: list[tuple[str, str, bytes]] | None = None,
    status_after: str | None = None,
    cc: Sequence[Contact] = (),
    html: str = "",
) -> tuple[Message, OutboxMail | None]:
    """Queue an agent's reply to the requester and CCs; returns the message and its
    outbox row (None when every recipient is suppressed).

    The reply answers the customer's newest own message (``ticket_mail.parent``).
    A new ticket becomes open; ``status_after`` sets another status at once
    ("send and set pending"). ``cc`` join the ticket's CCs first (so this reply
    and later ones go to them too); ``html`` is the agent's own HTML for the
    mail's HTML part (sanitised), instead of the text's. Raises
    ``HeaderInjection`` when the ticket's subject or the agent's name holds CR
    or LF (only a direct database edit puts them there): refused, not mended.
    """
    actor = as_actor(actor)
    author = actor.user
    if author is None:
        raise TicketError("a reply needs an agent to sign it")
    if not text.strip():
        raise TicketError("the reply is empty")
    if status_after is not None and status_after not in STATUSES:
        raise TicketError(f"status must be one of {', '.join(STATUSES)}")
    with operation(session, actor, now) as op:
        added = _add_ccs(ticket, cc, ticket.requester)
        if added:
            op.history(ticket, "cc", new=", ".join(contact.email for contact in added))
        mail = ticket_mail.reply(
            ticket, author=author, text=text, settings=settings, now=now,
            attachments=attachments, html=html,
        )  # fmt: skip
        people = ticket_mail.bouncing([ticket.requester, *ticket.ccs])
        message, row = enqueue(session, ticket, mail, now=now, author_id=author.id, bouncing=people)
        op.history(ticket, "reply")
        ticket.last_agent_reply_at = now
        wanted = status_after or ("open" if ticket.status == "new" else None)
        changed = apply_status(op, ticket, wanted) if wanted else None
        ticket.updated_at = now
        op.emit(ReplyQueued(ticket=ticket, at=now, cause=op.cause, message=message, outbox=row))
        if changed is not None:
            op.emit(TicketUpdated(ticket=ticket, at=now, cause=op.cause,
                                  changes={"status": changed}))  # fmt: skip
    return message, row


def add_note(
    session: Session, ticket: Ticket, *, actor: Actor | User, text: str, now: datetime
) -> Message:
    """An internal note: visible to agents, never mailed to the customer."""
    actor = as_actor(actor)
    if not text.strip():
        raise TicketError("the note is empty")
    with operation(session, actor, now) as op:
        user = actor.user
        note = Message(
            ticket=ticket,
            kind="note",
            message_id="",
            from_address=user.email if user else "",
            from_name=(user.name if user else actor.label)[:200],
            text_body=text,
            author_id=actor.user_id,
            created_at=now,
        )
        session.add(note)
        op.history(ticket, "note")
        ticket.updated_at = now
        op.emit(NoteAdded(ticket=ticket, at=now, cause=op.cause, message=note))
    return note


def mail_requester(
    session: Session,
    ticket: Ticket,
    *,
    actor: Actor,
    text: str,
    settings: Settings,
    now: datetime,
    due: datetime | None = None,
) -> tuple[Message, OutboxMail | None]:
    """An automatic mail to the requester (an automation rule's), threaded, queued
    in the outbox (due at ``due``, default now); a bouncing address gets none.
    History ``mail`` with the address."""
    if not text.strip():
        raise TicketError("the mail is empty")
    mail = ticket_mail.automatic(ticket, text=text, settings=settings, now=now)
    with operation(session, actor, now) as op:
        people = ticket_mail.bouncing([ticket.requester])
        message, row = enqueue(
            session, ticket, mail, now=now, flags=("automatic",), bouncing=people
        )
        if row is not None and due is not None:
            row.next_attempt_at = due
        op.history(ticket, "mail", new=ticket.requester.email)
        ticket.updated_at = now
    return message, row


def notify(
    session: Session,
    ticket: Ticket,
    users: Sequence[User],
    *,
    actor: Actor,
    title: str,
    text: str,
    settings: Settings,
    now: datetime,
) -> list[str]:
    """Mail these agents about the ticket (an automation rule's notice); history
    ``notify`` with their addresses. Returns the addresses."""
    with operation(session, actor, now) as op:
        sent = []
        for user in users:
            mail = ticket_mail.notification(
                ticket, user, purpose="notification:rule", title=title, excerpt=text,
                settings=settings, now=now,
            )  # fmt: skip
            queue_mail(session, ticket, mail, now=now)
            sent.append(user.email)
        if sent:
            op.history(ticket, "notify", new=", ".join(sent))
    return sent


def _add_message(op: Operation, ticket: Ticket, new: NewMessage) -> Message:
    actor = op.actor
    message = Message(
        ticket=ticket,
        raw_mail_id=new.raw_mail_id,
        kind="inbound",
        message_id=new.message_id,
        in_reply_to=" ".join(new.in_reply_to),
        references_header=" ".join(new.references),
        from_address=new.from_address,
        from_name=new.from_name[:200],
        to_addresses=list(new.to),
        cc_addresses=list(new.cc),
        reply_to=new.reply_to,
        subject=new.subject,
        sent_at=new.sent_at,
        text_body=new.text,
        html_body=new.html,
        html_safe=(new.html_safe or prepare_html(new.html)) if new.html else "",
        flags=sorted(new.flags),
        also_addressed=list(new.also_addressed),
        contact_id=actor.ref if actor.kind == CUSTOMER else None,
        author_id=actor.user_id if actor.kind == AGENT else None,
        created_at=op.now,
    )
    for part in new.attachments:
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
    op.session.add(message)
    ticket.updated_at = op.now
    return message


def _note_message_time(op: Operation, ticket: Ticket, new: NewMessage) -> None:
    """The moments time rules count from: a customer's own message, or an agent's
    mail to the requester (counted as a reply, as the SLA clocks count it)."""
    actor = op.actor
    if actor.kind == CUSTOMER:
        ticket.last_customer_message_at = op.now
    elif actor.kind == AGENT and ticket.requester.email in [*new.to, *new.cc]:
        ticket.last_agent_reply_at = op.now


def _add_ccs(ticket: Ticket, ccs: Sequence[Contact], requester: Contact) -> list[Contact]:
    """Add the contacts not yet on the ticket as CCs; returns those added."""
    known = {requester.id, *(link.contact_id for link in ticket.cc_links)}
    added = []
    for contact in ccs:
        if contact.id not in known:
            ticket.cc_links.append(TicketCC(contact=contact))
            known.add(contact.id)
            added.append(contact)
    return added


def acknowledgement_withheld(
    session: Session, ticket: Ticket, *, reason: str, now: datetime
) -> None:
    """No acknowledgement went to the requester, and why: a history row, by the system."""
    with operation(session, Actor.system("acknowledgements"), now) as op:
        op.history(ticket, "acknowledgement_withheld", new=reason)


def _record_not_added(op: Operation, ticket: Ticket, addresses: Sequence[str]) -> None:
    if addresses:
        op.history(ticket, "ccs_not_added", new=", ".join(addresses))
