"""Group commit: one writer thread applies the messages that arrive together in
one transaction, then answers each sender only after that commit.

Each message runs in its own savepoint, so one message's database error fails
only that message (451) while the others commit. The event loop never touches
the database: it hands bytes to the thread and awaits a future.
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

from sqlalchemy.orm import Session, sessionmaker

from helpdesk import queues
from helpdesk.clock import utcnow
from helpdesk.intake import Envelope, IntakeResult, receive
from helpdesk.settings import Settings

log = logging.getLogger(__name__)
_STOP = object()


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
        now = self._clock()
        outcomes: list[IntakeResult | BaseException] = []
        try:
            with self._sessions() as session, session.begin():
                directory = queues.directory(session, mail_domain=self._settings.mail_domain)
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
        for job, outcome in zip(batch, outcomes, strict=True):
            _resolve(job, outcome)
