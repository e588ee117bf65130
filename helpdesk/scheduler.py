"""Periodic jobs of the worker, each run in its own transactions: SLA escalation
(every ``interval`` seconds) and the time rules of automation (once a minute,
``helpdesk.automation.timed``).

Runs in a thread beside the outbox sender, in ``helpdesk worker`` and
``helpdesk serve``. Several workers may run: the jobs lock what they work on
(time rules hold a lease: one worker at a time).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.automation.timed import TimeRules
from helpdesk.clock import utcnow
from helpdesk.settings import Settings
from helpdesk.sla.escalation import escalate
from helpdesk.tickets.dispatch import Dispatcher

log = logging.getLogger(__name__)

TIME_RULES_EVERY = timedelta(minutes=1)


class Scheduler:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        *,
        interval: float = 15.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.interval = interval
        self.clock = clock
        self.time_rules = TimeRules(sessions, settings)
        self._rules_run_at: datetime | None = None
        self._stop = threading.Event()

    def run_once(self, limit: int = 200) -> int:
        with self.sessions() as session, session.begin():
            return escalate(session, now=self.clock(), limit=limit)

    def run_time_rules(self) -> int:
        """The time rules' pass, when a minute has passed since the last one."""
        now = self.clock()
        if self._rules_run_at is not None and now - self._rules_run_at < TIME_RULES_EVERY:
            return 0
        self._rules_run_at = now
        return self.time_rules.run(now)

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                # Catch up in batches after a policy change marked many tickets (bounded).
                for _ in range(100):
                    if self.run_once() < 200 or self._stop.is_set():
                        break
                self.run_time_rules()
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
