"""Agent replies and internal notes on a ticket.

A reply goes to the requester and the ticket's CCs, threaded under the
latest customer message, and is queued in the caller's transaction; a note
is only recorded on the ticket.
"""

from __future__ import annotations

from datetime import datetime

from helpdesk.mail.compose import (
    Outgoing,
    check_header,
    render_for_queue,
    reply_subject,
    thread_references,
)
from helpdesk.mail.messageid import make_message_id
from helpdesk.models import Message, OutboxMail, Ticket, User
from helpdesk.outbound.outbox import enqueue
from helpdesk.settings import Settings
from helpdesk.sla.service import refresh as refresh_sla
from helpdesk.tickets.history import record


class ReplyError(ValueError):
    """The reply cannot be sent as asked; the message is safe to show."""


def _parent(ticket: Ticket) -> Message | None:
    """The message a reply answers: the newest inbound one, else the newest outbound."""
    for kind in ("inbound", "outbound"):
        for message in reversed(ticket.messages):
            if message.kind == kind:
                return message
    return None


def reply(
    session,  # type: ignore[no-untyped-def]
    ticket: Ticket,
    *,
    author: User,
    text: str,
    settings: Settings,
    now: datetime,
    attachments: list[tuple[str, str, bytes]] | None = None,
) -> tuple[Message, OutboxMail | None]:
    """Queue an agent's reply; returns the outbound message and its outbox row.

    Raises HeaderInjection when the ticket's subject or the agent's name holds
    CR or LF (only a direct database edit puts them there): refused, not mended.
    """
    if not text.strip():
        raise ReplyError("the reply is empty")
    # reply_subject() folds a CRLF pair into a space; refuse it before that hides it.
    check_header("Subject", ticket.subject)
    parent = _parent(ticket)
    context = dict(ticket=ticket, queue=ticket.queue, agent=author, body=text, settings=settings)
    out = Outgoing(
        from_address=ticket.queue.email_address,
        from_name=f"{author.name or settings.sender_name} ({ticket.queue.name})",
        to=[ticket.requester.email],
        cc=[contact.email for contact in ticket.ccs],
        subject=reply_subject(ticket.subject, settings.subject_tag_prefix, ticket.number),
        message_id=make_message_id(settings.secret_key, ticket.number, settings.mail_domain),
        text=render_for_queue("reply.txt", ticket.queue.slug, **context),
        html=render_for_queue("reply.html", ticket.queue.slug, **context),
        reply_to=settings.reply_to,
        in_reply_to=parent.message_id if parent else "",
        references=(
            thread_references(parent.references_header, parent.message_id) if parent else []
        ),
        loop_marker=settings.mail_domain,
        attachments=list(attachments or []),
    )
    message, row = enqueue(session, ticket, out, purpose="reply", now=now, author_id=author.id)
    if ticket.status == "new":
        record(session, ticket, "status", actor=author, old="new", new="open", now=now)
        ticket.status = "open"
    ticket.updated_at = now
    refresh_sla(session, ticket, now=now)  # a reply stops the response clocks
    return message, row


def add_note(session, ticket: Ticket, *, author: User, text: str, now: datetime) -> Message:  # type: ignore[no-untyped-def]
    """An internal note: visible to agents, never mailed to the customer."""
    if not text.strip():
        raise ReplyError("the note is empty")
    note = Message(
        ticket=ticket,
        kind="note",
        message_id="",
        from_address=author.email,
        from_name=author.name,
        text_body=text,
        author_id=author.id,
        created_at=now,
    )
    session.add(note)
    ticket.updated_at = now
    return note
