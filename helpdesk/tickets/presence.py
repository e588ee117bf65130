"""Presence for the collision hint: who is viewing a ticket, and what happened on
it since an agent opened it; and when a browser session or an API token was last used.

Seeing is not a change: a GET request must not write (a write on SQLite
takes the database's one write lock, and a request that reads then writes
fails at once when another process wrote meanwhile). So views note who was
seen where in a ``Recorder``, which a background thread writes every half
second in one short transaction of its own; when the database is busy, the
write is dropped, never a request. ``other_viewers`` also counts what this
process noted but has not written yet.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.models import ApiToken, Message, Ticket, TicketViewer, User, WebSession

log = logging.getLogger(__name__)

FRESH = timedelta(seconds=60)
# A browser session's last use is written at most this often.
SESSION_GRANULARITY = timedelta(minutes=1)


class Recorder:
    """Best-effort "last seen" writes, coalesced and off the request."""

    def __init__(self, sessions: sessionmaker[Session], *, interval: float = 0.5) -> None:
        self._sessions = sessions
        self._interval = interval
        self._lock = threading.Lock()
        self._viewers: dict[tuple[int, int], datetime] = {}
        self._writing: dict[tuple[int, int], datetime] = {}  # being written, not committed
        self._web_sessions: dict[str, datetime] = {}
        self._api_tokens: dict[int, datetime] = {}
        self._thread: threading.Thread | None = None

    def viewer(self, ticket_id: int, user_id: int, now: datetime) -> None:
        with self._lock:
            self._viewers[(ticket_id, user_id)] = now
            self._wake()

    def web_session(self, id_hash: str, now: datetime) -> None:
        """Note the use of the browser session stored under ``id_hash``."""
        with self._lock:
            self._web_sessions[id_hash] = now
            self._wake()

    def api_token(self, token_id: int, now: datetime) -> None:
        """Note the use of an API token (its "last used")."""
        with self._lock:
            self._api_tokens[token_id] = now
            self._wake()

    def noted_viewers(self, ticket_id: int) -> dict[int, datetime]:
        """Users noted on this ticket and not yet written: user id -> when."""
        with self._lock:
            noted = {**self._writing, **self._viewers}
        return {user: at for (ticket, user), at in noted.items() if ticket == ticket_id}

    def _wake(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="presence", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        idle = 0
        while idle < 20:  # the thread ends after ~10 s with nothing to write
            time.sleep(self._interval)
            idle = 0 if self.flush() else idle + 1

    def flush(self) -> bool:
        """Write what was noted, in one transaction; False when there was nothing."""
        with self._lock:
            viewers, self._viewers = self._viewers, {}
            web_sessions, self._web_sessions = self._web_sessions, {}
            api_tokens, self._api_tokens = self._api_tokens, {}
            self._writing = viewers
        if not viewers and not web_sessions and not api_tokens:
            return False
        try:
            with self._sessions() as session, session.begin():
                for (ticket_id, user_id), at in viewers.items():
                    _seen_on(session, ticket_id, user_id, at)
                for id_hash, at in web_sessions.items():
                    session.execute(
                        update(WebSession)
                        .where(
                            WebSession.id_hash == id_hash,
                            WebSession.last_seen_at < at - SESSION_GRANULARITY,
                        )
                        .values(last_seen_at=at)
                        .execution_options(synchronize_session=False)
                    )
                for token_id, at in api_tokens.items():
                    session.execute(
                        update(ApiToken)
                        .where(
                            ApiToken.id == token_id,
                            (ApiToken.last_used_at.is_(None))
                            | (ApiToken.last_used_at < at - SESSION_GRANULARITY),
                        )
                        .values(last_used_at=at)
                        .execution_options(synchronize_session=False)
                    )
        except SQLAlchemyError:
            log.info("presence not recorded (database busy)", exc_info=True)
        finally:
            with self._lock:
                self._writing = {}
        return True


def _seen_on(session: Session, ticket_id: int, user_id: int, at: datetime) -> None:
    try:
        with session.begin_nested():
            row = session.get(TicketViewer, (ticket_id, user_id))
            if row is None:
                session.add(TicketViewer(ticket_id=ticket_id, user_id=user_id, last_seen_at=at))
            else:
                row.last_seen_at = max(row.last_seen_at, at)
    except SQLAlchemyError:  # the ticket or user is gone meanwhile
        log.debug("viewer %s on ticket %s not recorded", user_id, ticket_id, exc_info=True)


def touch(recorder: Recorder, ticket: Ticket, user: User, *, now: datetime) -> None:
    """Note that ``user`` is looking at ``ticket`` (written shortly, best effort)."""
    recorder.viewer(ticket.id, user.id, now)


def other_viewers(
    session: Session, ticket: Ticket, user: User, *, now: datetime, recorder: Recorder | None = None
) -> list[User]:
    rows = session.scalars(
        select(TicketViewer).where(
            TicketViewer.ticket_id == ticket.id,
            TicketViewer.user_id != user.id,
            TicketViewer.last_seen_at >= now - FRESH,
        )
    )
    viewers = {row.user_id: row.user for row in rows}
    noted = recorder.noted_viewers(ticket.id) if recorder is not None else {}
    for user_id, at in noted.items():
        if user_id != user.id and user_id not in viewers and at >= now - FRESH:
            other = session.get(User, user_id)
            if other is not None:
                viewers[user_id] = other
    return list(viewers.values())


def newer_messages(session: Session, ticket: Ticket, user: User, after_id: int) -> list[Message]:
    """Messages added by others (or by mail) after the one the agent last saw."""
    stmt = select(Message).where(Message.ticket_id == ticket.id, Message.id > after_id)
    return [m for m in session.scalars(stmt.order_by(Message.id)) if m.author_id != user.id]
