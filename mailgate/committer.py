"""Group commit: one writer thread spools the messages that arrive together in
one transaction, then answers each sender only after that commit.

Nothing is parsed here: a batch is one multi-row ``INSERT`` of raw bytes and
envelopes (``helpdesk.intake.spool``), so a transaction is short whatever the
mail looks like, and the writer lock (SQLite's ``BEGIN IMMEDIATE``) is held
for milliseconds. The event loop never touches the database: it hands bytes
to the thread and awaits a future.

Never commit after a 4xx: a job that waited too long in the queue is
cancelled, and the writer skips cancelled jobs; a job the writer has taken
is waited for until its commit succeeds or fails (``Job.cancel`` returns
False then), because answering 451 while its commit may still succeed
would make the sender retry mail we kept. A batch whose statement fails is
tried again one message per transaction, so one message's error fails only
that message (451).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from datetime import datetime
from typing import cast

from sqlalchemy.orm import Session, sessionmaker

from helpdesk.clock import utcnow
from helpdesk.intake.spool import Delivery, Envelope, spool
from helpdesk.settings import Settings

log = logging.getLogger(__name__)
_STOP = object()
QUEUED, TAKEN, CANCELLED = "queued", "taken", "cancelled"


class Job:
    """One message waiting for the writer; its future resolves after the commit."""

    __slots__ = ("_lock", "delivery", "future", "loop", "state")

    def __init__(self, delivery: Delivery, loop: asyncio.AbstractEventLoop) -> None:
        self.delivery = delivery
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.state = QUEUED
        self._lock = threading.Lock()

    def take(self) -> bool:
        """The writer claims the job; False if it was cancelled first."""
        with self._lock:
            if self.state == CANCELLED:
                return False
            self.state = TAKEN
            return True

    def cancel(self) -> bool:
        """Withdraw a job the writer has not taken; False if it already has."""
        with self._lock:
            if self.state == TAKEN:
                return False
            self.state = CANCELLED
            return True

    def resolve(self, error: BaseException | None) -> None:
        def settle() -> None:
            if self.future.done():
                return
            if error is None:
                self.future.set_result(None)
            else:
                self.future.set_exception(error)

        # A closed loop means nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(settle)


class SpoolTimeout(Exception):
    """The message waited too long for the writer and was withdrawn: nothing was stored."""


class IntakeCommitter:
    """Batches spool jobs from the event loop into transactions on one thread."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        *,
        max_batch: int = 64,
        max_batch_bytes: int = 32 * 1024 * 1024,
        clock: Callable[[], datetime] = utcnow,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._max_batch = max_batch
        self._max_batch_bytes = max_batch_bytes
        self._clock = clock
        self._on_commit = on_commit
        self._jobs: queue.SimpleQueue[Job | object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="intake-committer", daemon=True)
        self.batches = 0
        self.messages = 0
        self.taken = 0
        self._busy = False

    def start(self) -> None:
        self._thread.start()

    def idle(self) -> bool:
        """Nothing queued and no transaction under way."""
        return not self._busy and self._jobs.empty()

    def stop(self, timeout: float = 10.0) -> None:
        self._jobs.put(_STOP)
        self._thread.join(timeout)

    async def submit(self, raw: bytes, envelope: Envelope, timeout: float) -> None:
        """Spool the message; returns once committed. Raises (nothing stored) on failure,
        or ``SpoolTimeout`` when the writer did not take it within ``timeout`` seconds."""
        job = Job(Delivery(raw, envelope), asyncio.get_running_loop())
        self._jobs.put(job)
        try:
            await asyncio.wait_for(asyncio.shield(job.future), timeout)
        except TimeoutError:
            if job.cancel():
                raise SpoolTimeout() from None
            await job.future  # taken: its commit decides, whatever the clock says

    def _run(self) -> None:
        while True:
            first = self._jobs.get()
            if first is _STOP:
                return
            self._busy = True
            batch: list[Job] = []
            size = 0
            stop = False
            item: Job | object = first
            while True:
                if item is _STOP:
                    stop = True
                    break
                job = cast(Job, item)  # not _STOP: a job
                if job.take():
                    self.taken += 1
                    batch.append(job)
                    size += len(job.delivery.raw)
                if len(batch) >= self._max_batch or size >= self._max_batch_bytes:
                    break
                try:
                    item = self._jobs.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._commit(batch)
            self._busy = False
            if stop:
                return

    def _commit(self, batch: list[Job]) -> None:
        error = self._transaction(batch)
        if error is not None and len(batch) > 1:
            # Find the message that fails; the others are stored one by one.
            for job in batch:
                job.resolve(self._transaction([job]))
            return
        for job in batch:
            job.resolve(error)

    def _transaction(self, batch: list[Job]) -> BaseException | None:
        try:
            with self._sessions() as session, session.begin():
                spool(session, [job.delivery for job in batch], now=self._clock())
        except Exception as exc:
            log.exception("spooling %d messages failed; senders will retry", len(batch))
            return exc
        self.batches += 1
        self.messages += len(batch)
        if self._on_commit is not None:
            self._on_commit()
        return None
