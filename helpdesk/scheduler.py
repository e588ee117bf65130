"""Periodic jobs of the worker (SLA escalation), each run in its own transaction.

Runs in a thread beside the outbox sender, in ``helpdesk worker`` and
``helpdesk serve``. Several workers may run: the jobs lock what they work on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.clock import utcnow
from helpdesk.settings import Settings
from helpdesk.sla.escalation import escalate
from helpdesk.tickets.dispatch import Dispatcher

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        *,
        interval: float = 30.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.interval = interval
        self.clock = clock
        self._stop = threading.Event()

    def run_once(self, limit: int = 200) -> int:
        with self.sessions() as session, session.begin():
            return escalate(session, now=self.clock(), limit=limit)

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                # Catch up in batches after a policy change marked many tickets (bounded).
                for _ in range(100):
                    if self.run_once() < 200 or self._stop.is_set():
                        break
            except Exception:
                log.exception("periodic job failed; retrying")
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()


def start_scheduler(
    settings: Settings, engine: Engine, dispatcher: Dispatcher | None = None
) -> tuple[Scheduler, threading.Thread]:
    from helpdesk.subscribers import writing_sessions

    scheduler = Scheduler(writing_sessions(engine, settings, dispatcher), settings)
    thread = threading.Thread(target=scheduler.run, name="scheduler", daemon=True)
    thread.start()
    return scheduler, thread
