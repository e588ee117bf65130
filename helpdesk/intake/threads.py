"""Threading: which existing ticket, if any, a received message belongs to.

The rules run in order and the first match wins (DESIGN.md, "Email rules"):
our signed Message-IDs in In-Reply-To/References, then any stored Message-ID,
then the subject tag, which only counts when the sender already takes part in
the ticket (or in the ticket it was merged into) or is a proven agent
(``helpdesk.intake.senders``); a sender whose From is forged or ambiguous
takes part in nothing. Subject text alone never threads. A tag that does not
count leaves a flag: ``tag_mismatch`` for a sender who takes no part,
``unknown_tag`` for a ticket that does not exist.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.mail.messageid import verify_message_id
from helpdesk.mail.parse import InboundEmail
from helpdesk.models import Message, Ticket, User
from helpdesk.tickets.lifecycle import by_number, resolve_merges


@dataclass
class ThreadContext:
    session: Session
    mail: InboundEmail
    # "" for a sender who may not be matched to participants (forged or ambiguous From).
    sender: str
    secret_key: str
    tag_prefix: str
    # Message-IDs named elsewhere, e.g. the original message inside a bounce.
    extra_references: list[str] = field(default_factory=list)
    flags: set[str] = field(default_factory=set)
    # A proven agent takes part in every ticket (``helpdesk.intake.senders``).
    agent: User | None = None


@dataclass
class ThreadMatch:
    ticket: Ticket
    rule: str


def referenced_ids(ctx: ThreadContext) -> list[str]:
    """In-Reply-To first, then References newest first, then any extra ones, each once."""
    mail = ctx.mail
    ordered: list[str] = []
    for mid in [*mail.in_reply_to, *reversed(mail.references), *ctx.extra_references]:
        if mid not in ordered:
            ordered.append(mid)
    return ordered[:100]


def signed_reference(ctx: ThreadContext) -> Ticket | None:
    for mid in referenced_ids(ctx):
        number = verify_message_id(ctx.secret_key, mid)
        if number is not None:
            ticket = by_number(ctx.session, number)
            if ticket is not None:
                return ticket
    return None


def stored_reference(ctx: ThreadContext) -> Ticket | None:
    ids = referenced_ids(ctx)
    if not ids:
        return None
    rows = ctx.session.execute(
        select(Message.message_id, Message.ticket_id).where(Message.message_id.in_(ids))
    ).all()
    found = {mid: ticket_id for mid, ticket_id in rows}
    for mid in ids:
        if mid in found:
            return ctx.session.get(Ticket, found[mid])
    return None


def is_participant(ticket: Ticket, address: str) -> bool:
    """The requester or a CC (agents: only with proof, see ``ThreadContext.agent``)."""
    if not address:
        return False
    return ticket.requester.email == address or any(cc.email == address for cc in ticket.ccs)


def subject_tag(ctx: ThreadContext) -> Ticket | None:
    pattern = re.compile(r"\[" + re.escape(ctx.tag_prefix) + r"\s*(\d{1,12})\]", re.IGNORECASE)
    match = pattern.search(ctx.mail.subject)
    if not match:
        return None
    ticket = by_number(ctx.session, int(match.group(1)))
    if ticket is None:
        ctx.flags.add("unknown_tag")
        return None
    # The requester of a merged ticket still writes with its tag.
    target = resolve_merges(ctx.session, ticket)
    if ctx.agent is None and not any(is_participant(t, ctx.sender) for t in {ticket, target}):
        ctx.flags.add("tag_mismatch")
        return None
    return ticket


RULES: tuple[tuple[str, Callable[[ThreadContext], Ticket | None]], ...] = (
    ("signed_reference", signed_reference),
    ("stored_reference", stored_reference),
    ("subject_tag", subject_tag),
)


def find_ticket(ctx: ThreadContext) -> ThreadMatch | None:
    """The ticket the message follows up on (after merges), or None for a new ticket."""
    for name, rule in RULES:
        ticket = rule(ctx)
        if ticket is not None:
            return ThreadMatch(resolve_merges(ctx.session, ticket), name)
    return None
