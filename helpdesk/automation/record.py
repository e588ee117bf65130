"""What the rules did and saw: the execution log (``RuleRun``) and the journal of
recent events (``RuleJournal``), written cheaply and kept short.

The engine runs inside the transaction of the change it reacts to, often for
a ticket not flushed yet and in batches of a hundred mails (intake). So it
does not insert rows as it goes: ``add_run`` and ``add_journal`` keep them on
the session, and they are written with one multi-row INSERT per table when
the outermost transaction commits (after the final flush, so every ticket has
its id). Entries made inside a savepoint that rolls back are dropped with it
(intake applies each mail in a savepoint), so the log never tells of a change
that did not happen.

``prune`` keeps the newest ``KEEP_RUNS`` log entries per rule and the newest
``KEEP_JOURNAL`` journal rows per event type; the worker's time-rule pass
calls it once a minute.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, event, func, insert, select
from sqlalchemy.orm import Session, SessionTransaction

from helpdesk.models import Message, RuleJournal, RuleRun, Ticket

KEEP_RUNS = 1000
KEEP_JOURNAL = 1000
_KEY = "helpdesk.rule_records"


@dataclass
class _Entry:
    transaction: SessionTransaction
    table: str  # "run" or "journal"
    ticket: Ticket
    values: dict[str, Any]
    message: Message | None = None


def _buffer(session: Session) -> list[_Entry]:
    entries = session.info.get(_KEY)
    if entries is None:
        entries = session.info[_KEY] = []
        event.listen(session, "before_commit", _write)
        event.listen(session, "after_soft_rollback", _drop)
    return entries


def _current(session: Session) -> SessionTransaction:
    transaction = session.get_nested_transaction() or session.get_transaction()
    if transaction is None:
        session.connection()  # begins the transaction the entries belong to
        transaction = session.get_transaction()
    assert transaction is not None
    return transaction


def add_run(
    session: Session,
    *,
    rule_id: int,
    ticket: Ticket,
    at: datetime,
    event: str,
    outcome: str,
    detail: str,
) -> None:
    """A rule acted (or failed to) on a ticket."""
    _buffer(session).append(
        _Entry(
            _current(session), "run", ticket,
            {"rule_id": rule_id, "at": at, "event": event, "outcome": outcome,
             "detail": detail[:1000]},
        )
    )  # fmt: skip


def add_journal(
    session: Session,
    *,
    ticket: Ticket,
    at: datetime,
    event: str,
    facts: dict[str, Any],
    verdicts: dict[str, str],
    message: Message | None = None,
) -> None:
    """An event the rules saw, with why each rule that did not act did not."""
    _buffer(session).append(
        _Entry(
            _current(session), "journal", ticket,
            {"at": at, "event": event, "facts": facts, "verdicts": verdicts}, message,
        )
    )  # fmt: skip


def _write(session: Session) -> None:
    if session.in_nested_transaction():
        return
    entries = session.info.get(_KEY)
    if not entries:
        return
    session.flush()
    runs, journal = [], []
    for entry in entries:
        values = {**entry.values, "ticket_id": entry.ticket.id}
        if entry.table == "run":
            runs.append(values)
        else:
            if entry.message is not None:
                values["facts"] = {**values["facts"], "message_id": entry.message.id}
            journal.append(values)
    entries.clear()
    if runs:
        session.execute(insert(RuleRun.__table__), runs)
    if journal:
        session.execute(insert(RuleJournal.__table__), journal)


def _drop(session: Session, previous: SessionTransaction) -> None:
    entries = session.info.get(_KEY)
    if not entries:
        return
    entries[:] = [entry for entry in entries if not _within(entry.transaction, previous)]


def _within(transaction: SessionTransaction | None, ancestor: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is ancestor:
            return True
        transaction = transaction.parent
    return False


def prune(session: Session) -> int:
    """Keep the newest entries only (see the module docstring); returns rows removed."""
    removed = 0
    for rule_id in session.scalars(select(RuleRun.rule_id).distinct()).all():
        oldest_kept = session.scalars(
            select(RuleRun.id)
            .where(RuleRun.rule_id == rule_id)
            .order_by(RuleRun.id.desc())
            .offset(KEEP_RUNS - 1)
            .limit(1)
        ).first()
        if oldest_kept is not None:
            removed += session.execute(
                delete(RuleRun).where(RuleRun.rule_id == rule_id, RuleRun.id < oldest_kept)
            ).rowcount
    for name in session.scalars(select(RuleJournal.event).distinct()).all():
        oldest_kept = session.scalars(
            select(RuleJournal.id)
            .where(RuleJournal.event == name)
            .order_by(RuleJournal.id.desc())
            .offset(KEEP_JOURNAL - 1)
            .limit(1)
        ).first()
        if oldest_kept is not None:
            removed += session.execute(
                delete(RuleJournal).where(RuleJournal.event == name, RuleJournal.id < oldest_kept)
            ).rowcount
    return removed


def runs_of(session: Session, rule_id: int, *, limit: int = 100) -> list[RuleRun]:
    """The rule's newest log entries."""
    return list(
        session.scalars(
            select(RuleRun)
            .where(RuleRun.rule_id == rule_id)
            .order_by(RuleRun.id.desc())
            .limit(limit)
        )
    )


def recent(session: Session, event_name: str, *, limit: int = 200) -> list[RuleJournal]:
    """The newest journal rows of one event type, newest first."""
    return list(
        session.scalars(
            select(RuleJournal)
            .where(RuleJournal.event == event_name)
            .order_by(RuleJournal.id.desc())
            .limit(limit)
        )
    )


def count_runs(session: Session, rule_id: int) -> int:
    return (
        session.scalar(select(func.count()).select_from(RuleRun).where(RuleRun.rule_id == rule_id))
        or 0
    )
