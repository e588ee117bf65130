"""Feedback on mail to agents: a bounce or an auto-reply answering a notification.

Notifications and SLA escalations go to agents, not to the customer's thread,
so what comes back about them must not land there either (it used to show as
a customer message). Intake asks ``record`` first for every automated message
(auto-reply, bounce): if one of the Message-IDs it names (In-Reply-To,
References, or the returned message inside a delivery report) is that of an
outbox row for an agent, the answer is noted on that row (``feedback``), a
permanent failure marks the agent's address bouncing (the outbox and later
notifications skip it, as for customers), and the message goes no further.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.mail.addresses import normalise_address
from helpdesk.mail.dsn import DeliveryReport
from helpdesk.mail.parse import InboundEmail
from helpdesk.models import OutboxMail
from helpdesk.tickets import contacts

MAX_FEEDBACK = 2000


def record(
    session: Session, mail: InboundEmail, report: DeliveryReport | None, *, now: datetime
) -> str:
    """Note automated ``mail`` on the agent mail it answers; the reason, or "" if none."""
    ids = [*mail.in_reply_to, *mail.references]
    if report is not None:
        ids += report.original_message_ids
    ids = list(dict.fromkeys(mid for mid in ids if mid))[:100]
    if not ids:
        return ""
    row = session.scalars(
        select(OutboxMail)
        .where(OutboxMail.header_message_id.in_(ids), OutboxMail.message_id.is_(None))
        .order_by(OutboxMail.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return ""
    if report is None:
        _note(row, f"{now:%Y-%m-%d %H:%M} auto-reply from {mail.from_address}: {mail.subject}")
        return "notification_auto_reply"
    sent_to = {normalise_address(a) for a in row.rcpt_tos}
    for recipient in report.recipients:
        address = recipient.address
        if address not in sent_to or recipient.action != "failed":
            continue
        detail = f"{recipient.status} {recipient.diagnostic}".rstrip()
        _note(row, f"{now:%Y-%m-%d %H:%M} bounced for {address}: {detail}")
        if recipient.failed:
            contact = contacts.get_or_create(session, address, "", now=now)
            contact.bouncing_since = contact.bouncing_since or now
    return "notification_bounce"


def _note(row: OutboxMail, line: str) -> None:
    row.feedback = "\n".join(filter(None, [row.feedback, line.replace("\n", " ")]))[-MAX_FEEDBACK:]
