"""Bounces: what an RFC 3464 delivery report about mail we sent changes
(``helpdesk.mail.dsn`` reads it).

A report counts only once it has led back to one of our messages (its
Message-ID, found in the returned message or headers, names the ticket): a
bounce of mail we never sent is backscatter, and a forged one must not
silence a customer. A permanent failure (action ``failed``, status 5.x.x) then
marks the recipient as bouncing, which the outbox honours, but only if that
recipient was one our message went to. A ``failed`` report with a transient
status (the remote server gave up retrying) is attached to the ticket without
marking the address; a ``delayed`` report changes nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.mail.addresses import normalise_address
from helpdesk.mail.dsn import DeliveryReport
from helpdesk.models import Message
from helpdesk.tickets import contacts

log = logging.getLogger(__name__)


def recipients_of(session: Session, message_ids: list[str]) -> set[str]:
    """Everyone our outbound messages with these Message-IDs were addressed to."""
    if not message_ids:
        return set()
    rows = session.execute(
        select(Message.to_addresses, Message.cc_addresses).where(
            Message.kind == "outbound", Message.message_id.in_(message_ids)
        )
    )
    return {normalise_address(a) for to, cc in rows for a in [*(to or []), *(cc or [])]}


def apply_report(session: Session, report: DeliveryReport, *, now: datetime) -> list[str]:
    """Mark permanently failed recipients of the reported message as bouncing.

    Call only for a report that matched one of our tickets. Returns the
    addresses marked; a failed address our message did not go to is ignored.
    """
    sent_to = recipients_of(session, report.original_message_ids)
    marked = []
    for address in report.failed:
        if address not in sent_to:
            log.warning("bounce names %s, which our message was not sent to; ignored", address)
            continue
        contact = contacts.get_or_create(session, address, "", now=now)
        if contact.bouncing_since is None:
            contact.bouncing_since = now
            log.info("address %s is bouncing; outgoing mail will skip it", address)
        marked.append(address)
    return marked
