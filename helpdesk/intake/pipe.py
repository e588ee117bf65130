"""The intake pipe as operators see it: counts by state, the oldest unapplied mail,
the messages that need a look, their originals, and reprocessing.

Used by ``helpdesk mail status`` / ``helpdesk mail reprocess`` and the admin
"Mail" page. Reprocessing puts failed mail back in the spool (state
``spooled``): the applier reads it again, bounded, in order of receipt.
Unparsed mail already made a ticket (the original is attached to it), so it
is listed for a look, not reprocessed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from helpdesk.db import rowcount
from helpdesk.models import RawMail, Ticket
from helpdesk.models.raw_mail import RAW_STATES

NEEDS_A_LOOK = ("failed", "unparsed")


@dataclass(frozen=True)
class Problem:
    raw_mail_id: int
    state: str
    received_at: datetime
    mail_from: str
    size: int
    reason: str
    ticket_number: int | None


@dataclass
class PipeStatus:
    counts: dict[str, int] = field(default_factory=dict)
    oldest_unapplied: datetime | None = None
    problems: list[Problem] = field(default_factory=list)

    def waiting_for(self, now: datetime) -> timedelta | None:
        return now - self.oldest_unapplied if self.oldest_unapplied else None


def status(session: Session, *, limit: int = 200) -> PipeStatus:
    """Counts by state, the oldest spooled message, failed and unparsed mail (newest first)."""
    counts = dict.fromkeys(RAW_STATES, 0)
    for state, count in session.execute(
        select(RawMail.state, func.count()).group_by(RawMail.state)
    ):
        counts[state] = count
    oldest = session.scalar(
        select(RawMail.received_at).where(RawMail.state == "spooled").order_by(RawMail.id).limit(1)
    )
    rows = session.execute(
        select(
            RawMail.id, RawMail.state, RawMail.received_at, RawMail.mail_from, RawMail.size,
            RawMail.error, Ticket.number,
        )
        .outerjoin(Ticket, Ticket.id == RawMail.ticket_id)
        .where(RawMail.state.in_(NEEDS_A_LOOK))
        .order_by(RawMail.id.desc())
        .limit(limit)
    )  # fmt: skip
    return PipeStatus(counts, oldest, [Problem(*row) for row in rows])


def original(session: Session, raw_mail_id: int) -> bytes | None:
    """The exact bytes received, for download."""
    return session.scalar(select(RawMail.content).where(RawMail.id == raw_mail_id))


def reprocess(session: Session, ids: Sequence[int] | None = None) -> int:
    """Put failed mail (all of it, or these ids) back in the spool; returns how many."""
    stmt = (
        update(RawMail)
        .where(RawMail.state == "failed")
        .values(state="spooled", dedup_key=None, error="", processed_at=None)
        .execution_options(synchronize_session=False)
    )
    if ids is not None:
        stmt = stmt.where(RawMail.id.in_(list(ids)))
    return rowcount(session.execute(stmt))
