"""The spool: received bytes and their envelope made durable, nothing parsed.

``spool`` is all the gateway does before it answers 250: one multi-row
``INSERT`` (SQLAlchemy Core) of raw rows in state ``spooled``, in the caller's
transaction. Bytes already stored (same sha256) are skipped by the unique
index (``ON CONFLICT DO NOTHING``), so a retried delivery is one row and still
gets 250. On PostgreSQL the same transaction sends ``NOTIFY helpdesk_intake``,
which reaches the applier when the rows are committed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from helpdesk.db import rowcount
from helpdesk.models import RawMail

NOTIFY_CHANNEL = "helpdesk_intake"
_TABLE = cast(Table, RawMail.__table__)


@dataclass(frozen=True)
class Envelope:
    """The SMTP envelope and connection facts of one delivery."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    peer: str = ""
    helo: str = ""


@dataclass(frozen=True)
class Delivery:
    """One message as received: the exact bytes and how they came."""

    raw: bytes
    envelope: Envelope


def _values(delivery: Delivery, now: datetime) -> dict[str, object]:
    envelope = delivery.envelope
    return {
        "received_at": now,
        "peer": envelope.peer[:255],
        "helo": envelope.helo[:255],
        "mail_from": envelope.mail_from[:998],
        "rcpt_tos": list(envelope.rcpt_tos),
        "size": len(delivery.raw),
        "sha256": hashlib.sha256(delivery.raw).hexdigest(),
        "message_id": "",
        "state": "spooled",
        "error": "",
        "attempts": 0,
        "content": delivery.raw,
    }


def spool(session: Session, deliveries: Sequence[Delivery], *, now: datetime) -> int:
    """Store the deliveries (in order) unless their bytes are stored already; the
    caller commits. Returns how many rows were new."""
    if not deliveries:
        return 0
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(_TABLE).on_conflict_do_nothing(index_elements=["sha256"])
    result = session.execute(stmt, [_values(d, now) for d in deliveries])
    if dialect == "postgresql":
        session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL})
    return rowcount(result)


def by_sha256(session: Session, raw: bytes) -> RawMail | None:
    digest = hashlib.sha256(raw).hexdigest()
    return session.scalars(select(RawMail).where(RawMail.sha256 == digest)).one_or_none()


def pending(session: Session) -> int:
    """How many messages wait to be applied."""
    stmt = select(func.count()).select_from(RawMail).where(RawMail.state == "spooled")
    return session.scalar(stmt) or 0
