"""Bounces: reading RFC 3464 delivery reports about mail we sent.

A permanent failure (action ``failed``, status 5.x.x) marks the recipient as
bouncing, which the outbox honours; a ``delayed`` report changes nothing. The
report names our original message by its Message-ID, found in the returned
message or headers, which leads back to the ticket.
"""

from __future__ import annotations

import email
import logging
from dataclasses import dataclass, field
from datetime import datetime
from email import policy

from sqlalchemy.orm import Session

from helpdesk import contacts
from helpdesk.mail.addresses import normalise_address
from helpdesk.mail.parse import InboundEmail, message_ids

log = logging.getLogger(__name__)

RETURNED_TYPES = (
    "message/rfc822",
    "text/rfc822-headers",
    "message/global",
    "message/global-headers",
)


@dataclass
class DeliveryReport:
    failed: list[str] = field(default_factory=list)
    delayed: list[str] = field(default_factory=list)
    original_message_ids: list[str] = field(default_factory=list)

    @property
    def permanent(self) -> bool:
        return bool(self.failed)


def _recipient(block: dict[str, str]) -> str:
    value = block.get("final-recipient") or block.get("original-recipient") or ""
    return normalise_address(value.split(";", 1)[-1])


def read_report(mail: InboundEmail) -> DeliveryReport:
    """What a delivery report says: failed and delayed recipients, the original Message-ID."""
    report = DeliveryReport()
    for block in (mail.report or {}).get("recipients", []):
        action = block.get("action", "").lower()
        status = block.get("status", "").strip()
        address = _recipient(block)
        if not address:
            continue
        if action == "failed" and status.startswith("5"):
            report.failed.append(address)
        elif action == "delayed" or status.startswith("4"):
            report.delayed.append(address)
    for attachment in mail.attachments:
        if attachment.content_type not in RETURNED_TYPES:
            continue
        headers = email.message_from_bytes(attachment.data, policy=policy.compat32)
        report.original_message_ids += message_ids(str(headers.get("Message-ID", "")))
    report.original_message_ids += mail.in_reply_to + mail.references
    return report


def apply_report(session: Session, report: DeliveryReport, *, now: datetime) -> None:
    """Mark permanently failed recipients as bouncing (outgoing mail skips them)."""
    for address in report.failed:
        contact = contacts.get_or_create(session, address, "", now=now)
        if contact.bouncing_since is None:
            contact.bouncing_since = now
            log.info("address %s is bouncing; outgoing mail will skip it", address)
