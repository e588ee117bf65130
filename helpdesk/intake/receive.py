"""Intake: spooled raw mail becomes its effect on tickets.

The gateway only spools (``helpdesk.intake.spool``); the applier
(``helpdesk.intake.applier``) parses each spooled row outside any write
transaction and calls ``apply_spooled`` for it, inside its batch's
transaction: the duplicate check, then ``apply`` (classify, thread, open or
follow up, acknowledge, notify, SLA), and the row's new state, all committed
together. A message we cannot apply is kept raw with state ``failed``
(``helpdesk.intake.pipe.reprocess`` puts it back in the spool); a database
error propagates so the caller rolls back and the row stays spooled.

``receive`` does both steps at once in the caller's transaction, for imports
and tests that have the bytes in hand.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import DataError, SQLAlchemyError
from sqlalchemy.orm import Session

from helpdesk.intake.bounces import apply_report
from helpdesk.intake.senders import Sender, active_user, identify
from helpdesk.intake.spool import Delivery, Envelope, by_sha256, spool
from helpdesk.intake.threads import ThreadContext, find_ticket
from helpdesk.mail.addresses import QueueDirectory, Route, normalise_address
from helpdesk.mail.classify import classify, is_automated
from helpdesk.mail.dsn import read_report
from helpdesk.mail.limits import Limits
from helpdesk.mail.parse import InboundEmail, ParseError, read_message
from helpdesk.models import Contact, RawMail, Ticket, User
from helpdesk.outbound import feedback
from helpdesk.settings import Settings
from helpdesk.tickets import contacts, conversation, queues
from helpdesk.tickets.actors import Actor
from helpdesk.tickets.conversation import NewMessage, Opening

log = logging.getLogger(__name__)

__all__ = ["Envelope", "IntakeResult", "apply", "apply_spooled", "receive"]


@dataclass
class IntakeResult:
    """What happened: new_ticket, follow_up, duplicate, dropped or failed."""

    outcome: str
    raw_mail_id: int | None
    ticket_number: int | None = None
    flags: list[str] = field(default_factory=list)
    reason: str = ""


def envelope_of(row: RawMail) -> Envelope:
    return Envelope(row.mail_from, tuple(row.rcpt_tos), row.peer, row.helo)


def receive(
    session: Session,
    raw: bytes,
    envelope: Envelope,
    *,
    settings: Settings,
    now: datetime,
    directory: QueueDirectory | None = None,
) -> IntakeResult:
    """Spool ``raw`` and apply it at once, in the caller's transaction.

    The parse runs in this process (caps checked first, no time bound): for
    imports and tests. The gateway spools only; the applier parses bounded.
    """
    spool(session, [Delivery(raw, envelope)], now=now)
    row = by_sha256(session, raw)
    assert row is not None
    if row.state != "spooled":
        return IntakeResult("duplicate", row.id, _ticket_number(session, row))
    mail = read_message(raw, Limits.from_settings(settings))
    return apply_spooled(session, row, mail, settings=settings, now=now, directory=directory)


def apply_spooled(
    session: Session,
    row: RawMail,
    mail: InboundEmail,
    *,
    settings: Settings,
    now: datetime,
    directory: QueueDirectory | None = None,
    applied: dict[str, RawMail] | None = None,
) -> IntakeResult:
    """Apply one spooled row whose bytes were read into ``mail``; sets the row's state.

    The same message applied before (same Message-ID and body, e.g. relayed
    again with other trace headers) changes nothing: this row becomes a
    ``duplicate`` pointing at that message's ticket. ``applied``: the rows
    already holding dedup keys of this batch (one query for the batch, see
    ``applied_by_key``), kept up to date here; without it, one query per row.
    """
    row.attempts += 1
    row.message_id = mail.message_id[:998]
    key = mail.dedup_key
    existing = applied.get(key) if applied is not None else _find_duplicate(session, key)
    if existing is not None and existing.id != row.id:
        row.state = "duplicate"
        row.ticket_id = existing.ticket_id
        row.processed_at = now
        return IntakeResult("duplicate", row.id, _ticket_number(session, existing))
    row.dedup_key = key
    if applied is not None:
        applied[key] = row
    result = apply(
        session, row, mail, envelope_of(row), settings=settings, now=now, directory=directory
    )
    if mail.unparsed and row.state == "processed":
        row.state, row.error = "unparsed", mail.unparsed
    return result


def applied_by_key(session: Session, keys: list[str]) -> dict[str, RawMail]:
    """The rows that already hold these dedup keys, by key."""
    stmt = select(RawMail).where(RawMail.dedup_key.in_(keys))
    return {row.dedup_key: row for row in session.scalars(stmt) if row.dedup_key}


def _fail(row: RawMail, error: str, now: datetime) -> IntakeResult:
    row.state = "failed"
    row.error = error[:4000]
    row.processed_at = now
    return IntakeResult("failed", row.id, reason=row.error)


def _find_duplicate(session: Session, dedup_key: str) -> RawMail | None:
    return session.scalars(select(RawMail).where(RawMail.dedup_key == dedup_key)).one_or_none()


def _ticket_number(session: Session, row: RawMail) -> int | None:
    if row.ticket_id is None:
        return None
    return session.scalar(select(Ticket.number).where(Ticket.id == row.ticket_id))


def apply(
    session: Session,
    row: RawMail,
    mail: InboundEmail,
    envelope: Envelope,
    *,
    settings: Settings,
    now: datetime,
    directory: QueueDirectory | None = None,
) -> IntakeResult:
    """Apply a parsed message; a non-database failure marks the raw mail failed."""
    try:
        with session.begin_nested():
            result = _apply(session, row, mail, envelope, settings, now, directory)
    except DataError as exc:
        # A value the database refuses (too long, NUL, out of range) will be
        # refused on every retry too: keep the raw mail as failed instead.
        log.warning("raw mail %s has data the database refuses; stored as failed", row.id)
        return _fail(row, f"DataError: {exc.orig}", now)
    except SQLAlchemyError:
        raise
    except Exception as exc:
        log.exception("raw mail %s could not be applied; stored as failed", row.id)
        return _fail(row, f"{type(exc).__name__}: {exc}", now)
    row.state = "dropped" if result.outcome == "dropped" else "processed"
    row.error = result.reason
    row.processed_at = now
    return result


def _apply(
    session: Session,
    row: RawMail,
    mail: InboundEmail,
    envelope: Envelope,
    settings: Settings,
    now: datetime,
    directory: QueueDirectory | None,
) -> IntakeResult:
    directory = directory or queues.directory(session, mail_domain=settings.mail_domain)
    envelope_sender = normalise_address(envelope.mail_from)
    who = identify(session, mail, envelope, settings)
    sender = who.address
    flags = who.flags | classify(
        mail,
        envelope_sender,
        mail_domain=settings.mail_domain,
        secret_key=settings.secret_key,
        own_addresses=set(directory.addresses),
    )
    if "loop" in flags:
        log.warning("dropped mail loop: raw mail %s from %s", row.id, sender)
        return IntakeResult("dropped", row.id, flags=sorted(flags), reason="loop")

    report = read_report(mail) if "bounce" in flags else None
    if report is not None and not report.final:
        reason = "delivery_delayed" if report.delayed else "delivery_report"
        log.info("%s for %s (raw mail %s)", reason, ", ".join(report.delayed) or "-", row.id)
        return IntakeResult("dropped", row.id, flags=sorted(flags), reason=reason)

    if is_automated(sorted(flags)):
        reason = feedback.record(session, mail, report, now=now)
        if reason:
            log.info("%s: raw mail %s", reason, row.id)
            return IntakeResult("dropped", row.id, flags=sorted(flags), reason=reason)

    ctx = ThreadContext(
        session, mail, sender if who.known else "", settings.secret_key,
        settings.subject_tag_prefix, agent=who.agent,
        extra_references=report.original_message_ids if report else [],
    )  # fmt: skip
    match = find_ticket(ctx)
    flags |= ctx.flags
    incoming = Incoming(session, row, mail, who, sorted(flags), directory, settings, now)
    if match is not None:
        ticket = match.ticket
        if report is not None:
            # Only a report about one of our messages may mark an address.
            apply_report(session, report, now=now)
        if _opens_new_ticket(ticket, incoming):
            return _new_ticket(incoming, [ticket.queue.slug], follow_up_of=ticket)
        return _follow_up(incoming, ticket, match.rule)

    if "out_of_office" in flags or "bounce" in flags:
        reason = "bounce_unmatched" if "bounce" in flags else "out_of_office"
        log.info("dropped %s matching no ticket: raw mail %s", reason, row.id)
        return IntakeResult("dropped", row.id, flags=sorted(flags), reason=reason)
    if not sender:
        raise ParseError("no sender address in From or the envelope")
    slugs = directory.queues_for(list(envelope.rcpt_tos)) or _queues_from_headers(mail, directory)
    if not slugs:
        raise ParseError("no recipient routes to a queue")
    return _new_ticket(incoming, slugs)


@dataclass
class Incoming:
    """One classified message on its way into a ticket."""

    session: Session
    row: RawMail
    mail: InboundEmail
    who: Sender
    flags: list[str]
    directory: QueueDirectory
    settings: Settings
    now: datetime

    @property
    def sender(self) -> str:
        return self.who.address

    @property
    def agent(self) -> User | None:
        return self.who.agent

    @property
    def automated(self) -> bool:
        return is_automated(self.flags)

    def message(self, also_addressed: list[str] | None = None) -> NewMessage:
        new = NewMessage.from_mail(
            self.mail, raw_mail_id=self.row.id, flags=self.flags,
            also_addressed=also_addressed or [],
        )  # fmt: skip
        # An ambiguous From names nobody: the message is the envelope sender's (the
        # requester's), its From as written kept as the name shown.
        new.from_address = new.from_address or self.sender
        return new


def _opens_new_ticket(ticket: Ticket, incoming: Incoming) -> bool:
    """A customer's reply to a closed ticket in a queue whose policy is "new_ticket"."""
    return (
        ticket.status == "closed"
        and ticket.queue.closed_reply_policy == "new_ticket"
        and not incoming.automated
        and incoming.agent is None
    )


def _follow_up(incoming: Incoming, ticket: Ticket, rule: str) -> IntakeResult:
    session, agent, now = incoming.session, incoming.agent, incoming.now
    if agent is not None:
        actor = Actor.agent(agent)
    else:
        actor = Actor.customer(
            contacts.get_or_create(session, incoming.sender, incoming.who.name, now=now)
        )
    ccs, not_added = _cc_contacts(incoming, ticket.requester.email, len(ticket.ccs))
    conversation.receive_message(
        session, ticket, incoming.message(), actor=actor, now=now, ccs=ccs,
        ccs_not_added=not_added,
    )  # fmt: skip
    incoming.row.ticket_id = ticket.id
    return IntakeResult("follow_up", incoming.row.id, ticket.number, incoming.flags, rule)


def _new_ticket(
    incoming: Incoming, slugs: list[str], *, follow_up_of: Ticket | None = None
) -> IntakeResult:
    session, mail, agent, now = incoming.session, incoming.mail, incoming.agent, incoming.now
    queue = queues.by_slug(session, slugs[0])
    if queue is None:
        raise ParseError(f"queue {slugs[0]} no longer exists")
    requester = _requester(incoming)
    actor = Actor.agent(agent) if agent is not None else Actor.customer(requester)
    ccs, not_added = _cc_contacts(incoming, requester.email, 0)
    ticket = conversation.open_ticket(
        session, queue=queue, requester=requester, subject=mail.subject, actor=actor, now=now,
        opening=Opening(
            channel="mail", message=incoming.message(slugs[1:]), ccs=ccs,
            ccs_not_added=not_added, acknowledge=agent is None, follow_up_of=follow_up_of,
        ),
    )  # fmt: skip
    session.flush()
    incoming.row.ticket_id = ticket.id
    return IntakeResult("new_ticket", incoming.row.id, ticket.number, incoming.flags)


def _requester(incoming: Incoming) -> Contact:
    """The sender; for an agent's mail, the first customer it is addressed to.

    An agent who writes to a customer with the queue in copy opens the ticket
    on the customer's behalf; only mail with no customer in To/Cc makes the
    agent the requester (someone must be).
    """
    session, mail, now = incoming.session, incoming.mail, incoming.now
    name, address = incoming.who.name, incoming.sender
    if incoming.agent is not None:
        customers = _customer_recipients(session, mail, incoming.directory)
        if customers:
            name, address = customers[0]
    return contacts.get_or_create(session, address, name, now=now)


def _customer_recipients(
    session: Session, mail: InboundEmail, directory: QueueDirectory
) -> list[tuple[str, str]]:
    """To/Cc addresses that are neither ours (queues) nor agents', in order."""
    return [
        (name, address)
        for name, address in [*mail.to, *mail.cc]
        if directory.route(address)[0] is not Route.QUEUE and active_user(session, address) is None
    ]


def _queues_from_headers(mail: InboundEmail, directory: QueueDirectory) -> list[str]:
    return directory.queues_for([address for _, address in [*mail.to, *mail.cc]])


def _cc_contacts(
    incoming: Incoming, requester_email: str, present: int
) -> tuple[list[Contact], list[str]]:
    """Customer addresses in To/Cc become CCs (our own addresses and agents never do),
    up to ``HELPDESK_MAX_MAIL_CCS`` on the ticket (``present`` it has already); and the
    addresses not added. Automated mail adds none; a forged or ambiguous sender adds none
    and records them all."""
    if incoming.automated:
        return [], []
    session, now = incoming.session, incoming.now
    candidates = [
        (name, address)
        for name, address in _customer_recipients(session, incoming.mail, incoming.directory)
        if address != requester_email
    ]
    room = max(0, incoming.settings.max_mail_ccs - present) if incoming.who.known else 0
    added = [contacts.get_or_create(session, a, name, now=now) for name, a in candidates[:room]]
    return added, [address for _, address in candidates[room:]]
