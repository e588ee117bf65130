"""Bounces: reading RFC 3464 delivery reports about mail we sent.

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

import email
import logging
from dataclasses import dataclass, field
from datetime import datetime
from email import policy

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.mail.addresses import normalise_address
from helpdesk.mail.parse import InboundEmail, message_ids
from helpdesk.models import Message
from helpdesk.tickets import contacts

log = logging.getLogger(__name__)

RETURNED_TYPES = (
    "message/rfc822",
    "text/rfc822-headers",
    "message/global",
    "message/global-headers",
)


@dataclass
class DeliveryReport:
    # action "failed" with a 5.x.x status: the address does not work
    failed: list[str] = field(default_factory=list)
    # action "failed" with another status: the remote server gave up retrying
    expired: list[str] = field(default_factory=list)
    # action "delayed" (still retrying)
    delayed: list[str] = field(default_factory=list)
    original_message_ids: list[str] = field(default_factory=list)

    @property
    def permanent(self) -> bool:
        return bool(self.failed)

    @property
    def final(self) -> bool:
        """Some recipient will never get the message."""
        return bool(self.failed or self.expired)


def _recipient(block: dict[str, str]) -> str:
    value = block.get("final-recipient") or block.get("original-recipient") or ""
    return normalise_address(value.split(";", 1)[-1])


def read_report(mail: InboundEmail) -> DeliveryReport:
    """What a delivery report says: failed and delayed recipients, the original Message-ID."""
    report = DeliveryReport()
    for block in (mail.report or {}).get("recipients", []):
        action = block.get("action", "").strip().lower()
        status = block.get("status", "").strip()
        address = _recipient(block)
        if not address:
            continue
        if action == "failed":
            (report.failed if status.startswith("5") else report.expired).append(address)
        elif action == "delayed":
            report.delayed.append(address)
    for attachment in mail.attachments:
        if attachment.content_type not in RETURNED_TYPES:
            continue
        headers = email.message_from_bytes(attachment.data, policy=policy.compat32)
        report.original_message_ids += message_ids(str(headers.get("Message-ID", "")))
    report.original_message_ids += mail.in_reply_to + mail.references
    return report


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
