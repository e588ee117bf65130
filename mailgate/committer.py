"""Group commit: one writer thread applies the messages that arrive together in
one transaction, then answers each sender only after that commit.

Each message runs in its own savepoint, so one message's database error fails
only that message (451) while the others commit. The event loop never touches
the database: it hands bytes to the thread and awaits a future.

Several gateways may share one PostgreSQL database. Their intake transactions
take one advisory lock, as SQLite's ``BEGIN IMMEDIATE`` does for the file:
without it, two batches holding the ticket counter and each other's new rows
deadlock, and the waits chain past the lock timeout. A message that still lost
a race with another transaction (a deadlock, or a unique key the other one
committed first) is tried again at once in a new transaction, a few times.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.clock import utcnow
from helpdesk.intake.receive import Envelope, IntakeResult, receive
from helpdesk.settings import Settings
from helpdesk.tickets import queues
from helpdesk.tickets.facts import preload

log = logging.getLogger(__name__)
_STOP = object()
MAX_ATTEMPTS = 3
# PostgreSQL's serialization failure and deadlock: the other transaction won.
_CONFLICT_STATES = frozenset({"40001", "40P01"})
# Any fixed number works; every gateway must use the same one ("hdin" in ASCII).
INTAKE_LOCK_KEY = 0x6864696E


@dataclass
class Job:
    raw: bytes
    envelope: Envelope
    future: asyncio.Future[IntakeResult]
    loop: asyncio.AbstractEventLoop


def _resolve(job: Job, outcome: IntakeResult | BaseException) -> None:
    def settle() -> None:
        if job.future.done():
            return
        if isinstance(outcome, BaseException):
            job.future.set_exception(outcome)
        else:
            job.future.set_result(outcome)

    # A closed loop means nobody is waiting any more.
    with contextlib.suppress(RuntimeError):
        job.loop.call_soon_threadsafe(settle)


def lost_a_race(outcome: IntakeResult | BaseException) -> bool:
    """Did a concurrent transaction make this attempt fail (so that a new one may succeed)?"""
    if isinstance(outcome, IntegrityError):
        return True
    return isinstance(outcome, DBAPIError) and (
        getattr(outcome.orig, "sqlstate", None) in _CONFLICT_STATES
    )


class IntakeCommitter:
    """Batches intake jobs from the event loop into transactions on one thread."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        *,
        max_batch: int = 64,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._max_batch = max_batch
        self._clock = clock
        self._jobs: queue.SimpleQueue[Job | object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="intake-committer", daemon=True)
        self.batches = 0
        self.messages = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._jobs.put(_STOP)
        self._thread.join(timeout)

    async def submit(self, raw: bytes, envelope: Envelope) -> IntakeResult:
        loop = asyncio.get_running_loop()
        job = Job(raw, envelope, loop.create_future(), loop)
        self._jobs.put(job)
        return await job.future

    def _run(self) -> None:
        while True:
            first = self._jobs.get()
            if first is _STOP:
                return
            batch: list[Job] = [first]  # type: ignore[list-item]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    item = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)  # type: ignore[arg-type]
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[Job]) -> None:
        """Apply the batch, try again the messages that lost a race, answer everyone."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            retry: list[Job] = []
            for job, outcome in zip(batch, self._transaction(batch), strict=True):
                if attempt < MAX_ATTEMPTS and lost_a_race(outcome):
                    retry.append(job)
                else:
                    _resolve(job, outcome)
            if not retry:
                return
            log.info("%d messages lost a race with another transaction; trying again", len(retry))
            batch = retry

    def _transaction(self, batch: list[Job]) -> list[IntakeResult | BaseException]:
        """One transaction for the batch: each message's result, or why it failed."""
        now = self._clock()
        outcomes: list[IntakeResult | BaseException] = []
        try:
            with self._sessions() as session, session.begin():
                if session.get_bind().dialect.name == "postgresql":
                    # Waits at most the lock timeout (settings.database_timeout).
                    session.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": INTAKE_LOCK_KEY}
                    )
                directory = queues.directory(session, mail_domain=self._settings.mail_domain)
                preload(session)  # agents, queue members, SLA policies: once per batch
                for job in batch:
                    try:
                        with session.begin_nested():
                            outcomes.append(
                                receive(
                                    session, job.raw, job.envelope,
                                    settings=self._settings, now=now, directory=directory,
                                )
                            )  # fmt: skip
                    except Exception as exc:
                        log.exception("intake failed for one message; sender will retry")
                        outcomes.append(exc)
        except Exception as exc:
            log.exception("intake commit failed for %d messages; senders will retry", len(batch))
            outcomes = [exc] * len(batch)
        self.batches += 1
        self.messages += len(batch)
        return outcomes
