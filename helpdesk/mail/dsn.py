"""Delivery status notifications (RFC 3464): what a bounce says, read in one place.

``report_fields`` reads the machine-readable part of a ``multipart/report``
while the message is parsed (into ``InboundEmail.report``: the per-message
fields and one block of fields per recipient). ``read_report`` says what
they mean: each recipient's action and status, whose address does not work
(``failed``: action ``failed`` with a 5.x.x status; with another status the
remote server only gave up retrying), whether some recipient will never get
the message (``final``), which are still being retried (``delayed``), and the
Message-IDs of the message it is about (from the returned message or its
headers, and the report's own In-Reply-To and References). What a report
changes (a contact marked bouncing, a note on an outbox row) is decided by
``intake.bounces`` and ``outbound.feedback``.
"""

from __future__ import annotations

import email
import re
from dataclasses import dataclass, field
from email import policy
from email.message import Message

from helpdesk.mail.addresses import normalise_address
from helpdesk.mail.headers import message_ids, one_line
from helpdesk.mail.inbound import InboundEmail
from helpdesk.mail.parts import part_bytes

RETURNED_TYPES = (
    "message/rfc822",
    "text/rfc822-headers",
    "message/global",
    "message/global-headers",
)
_STATUS_TYPES = ("message/delivery-status", "message/global-delivery-status")


def report_fields(msg: Message) -> dict[str, list[dict[str, str]]] | None:
    """The per-message and per-recipient fields of an RFC 3464 delivery report, or
    None for a message that is not one."""
    if msg.get_content_type() != "multipart/report":
        return None
    for part in msg.walk():
        if part.get_content_type() not in _STATUS_TYPES:
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            blocks = [
                {k.lower(): one_line(str(v)) for k, v in block.items()}
                for block in payload
                if isinstance(block, Message)
            ]
        else:
            text = part_bytes(part).decode("utf-8", "replace")
            blocks = []
            for chunk in re.split(r"\r?\n\s*\r?\n", text.strip()):
                sub = email.message_from_string(chunk + "\n\n", policy=policy.compat32)
                blocks.append({k.lower(): one_line(str(v)) for k, v in sub.items()})
        return {"message": blocks[:1], "recipients": blocks[1:]}
    return {"message": [], "recipients": []}


@dataclass(frozen=True)
class RecipientStatus:
    """What the report says about one recipient."""

    address: str
    action: str  # failed, delayed, delivered, relayed, expanded (lower case)
    status: str  # 5.1.1 ...
    diagnostic: str = ""

    @property
    def failed(self) -> bool:
        """The address does not work."""
        return self.action == "failed" and self.status.startswith("5")


@dataclass
class DeliveryReport:
    recipients: list[RecipientStatus] = field(default_factory=list)
    original_message_ids: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        """Addresses that do not work (action ``failed``, a 5.x.x status)."""
        return [r.address for r in self.recipients if r.failed]

    @property
    def delayed(self) -> list[str]:
        """Addresses still being retried."""
        return [r.address for r in self.recipients if r.action == "delayed"]

    @property
    def final(self) -> bool:
        """Some recipient will never get the message."""
        return any(r.action == "failed" for r in self.recipients)


def _recipient(block: dict[str, str]) -> str:
    value = block.get("final-recipient") or block.get("original-recipient") or ""
    return normalise_address(value.split(";", 1)[-1])


def read_report(mail: InboundEmail) -> DeliveryReport:
    """What a delivery report says: each recipient's status, the original Message-IDs."""
    report = DeliveryReport()
    for block in (mail.report or {}).get("recipients", []):
        address = _recipient(block)
        if address:
            report.recipients.append(
                RecipientStatus(
                    address=address,
                    action=block.get("action", "").strip().lower(),
                    status=block.get("status", "").strip(),
                    diagnostic=block.get("diagnostic-code", "").strip(),
                )
            )
    for attachment in mail.attachments:
        if attachment.content_type not in RETURNED_TYPES:
            continue
        headers = email.message_from_bytes(attachment.data, policy=policy.compat32)
        report.original_message_ids += message_ids(str(headers.get("Message-ID", "")))
    report.original_message_ids += mail.in_reply_to + mail.references
    return report
