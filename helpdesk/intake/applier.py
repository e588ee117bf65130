"""The applier: spooled raw mail becomes tickets, in order of receipt, right after the 250.

One applier is active across all processes (``helpdesk.intake.lease``);
others wait and take over when it dies. Its loop:

1. read ahead: the next spooled rows (by id) and their bytes, in a read
   transaction, and hand each to the parser pool (``helpdesk.intake.parsing``),
   which reads them in child processes while the previous batch is written;
2. take the parsed messages of a batch in order, then, in one write
   transaction (``BEGIN IMMEDIATE`` on SQLite): renew the lease (fencing),
   load the rows, and for each still ``spooled`` one apply it in a savepoint
   (``receive.apply_spooled``), whose state change commits with its effect.

So a killed applier's batch rolls back whole and is simply redone by the
next one, and applying the same raw mail twice has no second effect (it is
no longer ``spooled``). A message whose savepoint hits a database error ends
the batch there (the ones before it commit) and is retried; after
``MAX_ATTEMPTS`` it is marked ``failed``, so one bad row cannot block the
queue. Parsing never happens inside the write transaction.

Wake-up: ``helpdesk.intake.wakeup`` (in-process event, LISTEN/NOTIFY, or
SQLite's data_version), with a poll every ``idle`` seconds as a backstop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import SQLAlchemyError

from helpdesk.clock import utcnow
from helpdesk.db import session_factory
from helpdesk.intake import lease
from helpdesk.intake.parsing import Parser
from helpdesk.intake.receive import applied_by_key, apply_spooled
from helpdesk.intake.wakeup import Wakeup
from helpdesk.mail.inbound import InboundEmail
from helpdesk.models import RawMail
from helpdesk.settings import Settings
from helpdesk.subscribers import writing_sessions
from helpdesk.tickets import queues
from helpdesk.tickets.dispatch import Dispatcher
from helpdesk.tickets.facts import preload

log = logging.getLogger(__name__)

LEASE_NAME = "intake-applier"
MAX_ATTEMPTS = 3
# A batch's transaction ends after this much work, so that the gateway's spool
# commits (SQLite: the same write lock) never wait long; then a short pause.
MAX_TRANSACTION_SECONDS = 0.1
PAUSE_AFTER_COMMIT = 0.003


class LostLease(Exception):
    """Another process holds the applier's lease now."""


@dataclass
class Pending:
    raw_id: int
    raw: bytes
    parsed: Future[InboundEmail]
    failures: int = 0


@dataclass
class Stats:
    batches: int = 0
    applied: int = 0
    phases: dict[str, float] = field(
        default_factory=lambda: {"read": 0.0, "parse_wait": 0.0, "apply": 0.0, "commit": 0.0}
    )


class Applier:
    """Applies spooled mail while it holds the lease; ``run`` loops until ``stop``."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        dispatcher: Dispatcher | None = None,
        wakeup: Wakeup | None = None,
        parser: Parser | None = None,
        batch_size: int = 100,
        idle: float = 1.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.reads = session_factory(engine)
        # Applying changes tickets: its sessions carry the lifecycle's subscribers.
        self.writes = writing_sessions(engine, settings, dispatcher)
        self.wakeup = wakeup or Wakeup(engine)
        self.parser = parser or Parser(settings)
        self.batch_size = batch_size
        self.readahead = batch_size * 2
        self.idle = idle
        self.clock = clock
        self.holder = lease.holder_id()
        self.liveness = lease.Liveness(engine, LEASE_NAME)
        self.stats = Stats()
        self._pending: deque[Pending] = deque()
        self._last_id = 0
        self._holding = False
        self._renewed = 0.0
        self._stop = threading.Event()

    # -- the loop -------------------------------------------------------------------

    def run(self) -> None:
        self.wakeup.start()
        try:
            while not self._stop.is_set():
                try:
                    done = self.run_once() if self._hold() else 0
                except LostLease:
                    log.warning("the applier's lease was taken over; standing by")
                    self._drop_pending()
                    done = 0
                except Exception:
                    log.exception("applying spooled mail failed; retrying")
                    self._stop.wait(1.0)
                    done = 0
                if not done:
                    self.wakeup.wait(self.idle if self._holding else lease.TTL.seconds / 10)
                elif self.engine.dialect.name == "sqlite":
                    time.sleep(PAUSE_AFTER_COMMIT)  # the lock is free for the gateway a moment
        finally:
            self._release()

    def stop(self) -> None:
        self._stop.set()
        self.wakeup.notify()

    def close(self) -> None:
        self.parser.close()
        self.wakeup.close()
        self.liveness.close()

    def _hold(self) -> bool:
        """Take the lease, or renew it when a third of its time has passed."""
        if self._holding and time.monotonic() - self._renewed < lease.TTL.seconds / 3:
            return True
        gone = self.liveness.try_hold()
        with self.writes() as session, session.begin():
            holding = lease.acquire(
                session, LEASE_NAME, self.holder, now=self.clock(), holder_gone=gone
            )
        if holding and not self._holding:
            log.info("applier %s holds the lease", self.holder)
            self._drop_pending()
        self._holding = holding
        self._renewed = time.monotonic()
        return holding

    def _release(self) -> None:
        if self._holding:
            try:
                with self.writes() as session, session.begin():
                    lease.release(session, LEASE_NAME, self.holder, now=self.clock())
            except SQLAlchemyError:
                log.warning("could not release the applier's lease", exc_info=True)
        self._holding = False
        self.liveness.close()

    def _drop_pending(self) -> None:
        for item in self._pending:
            item.parsed.cancel()
        self._pending.clear()
        self._last_id = 0

    # -- one batch ------------------------------------------------------------------

    def run_once(self) -> int:
        """Apply the next batch of spooled mail; returns how many rows were settled."""
        started = time.perf_counter()
        self._read_ahead()
        if not self._pending:
            self._last_id = 0  # next time, look again from the start (late commits)
            return 0
        batch = [self._pending.popleft() for _ in range(min(self.batch_size, len(self._pending)))]
        read_done = time.perf_counter()
        parsed = [(item, self.parser.result(item.parsed, item.raw)) for item in batch]
        parse_done = time.perf_counter()
        self._read_ahead()  # the next batch parses while this one is written
        self.stats.phases["read"] += read_done - started + time.perf_counter() - parse_done
        self.stats.phases["parse_wait"] += parse_done - read_done
        try:
            return self._apply(parsed)
        except Exception:
            # The whole batch rolled back: redo it, whatever went back to the queue.
            taken = {id(item) for item in batch}
            self._pending = deque(item for item in self._pending if id(item) not in taken)
            self._pending.extendleft(reversed(batch))
            raise

    def _read_ahead(self) -> None:
        room = self.readahead - len(self._pending)
        if room <= 0:
            return
        stmt = (
            select(RawMail.id, RawMail.content)
            .where(RawMail.state == "spooled", RawMail.id > self._last_id)
            .order_by(RawMail.id)
            .limit(room)
        )
        with self.reads() as session:
            rows = session.execute(stmt).all()
        for raw_id, content in rows:
            self._pending.append(Pending(raw_id, content, self.parser.submit(content)))
            self._last_id = raw_id

    def _apply(self, parsed: list[tuple[Pending, InboundEmail]]) -> int:
        applied_at = time.perf_counter()
        now = self.clock()
        settled = 0
        failed: tuple[int, str] | None = None
        with self.writes() as session, session.begin():
            if not lease.renew(session, LEASE_NAME, self.holder, now=now):
                self._holding = False
                for item, _ in reversed(parsed):
                    self._pending.appendleft(item)
                raise LostLease()
            self._renewed = time.monotonic()
            directory = queues.directory(session, mail_domain=self.settings.mail_domain)
            preload(session)  # agents, queue members, SLA policies: once per batch
            ids = [item.raw_id for item, _ in parsed]
            rows = {
                row.id: row for row in session.scalars(select(RawMail).where(RawMail.id.in_(ids)))
            }
            applied = applied_by_key(session, [mail.dedup_key for _, mail in parsed])
            for index, (item, mail) in enumerate(parsed):
                row = rows.get(item.raw_id)
                if row is None or row.state != "spooled":
                    settled += 1
                    continue
                try:
                    with session.begin_nested():
                        result = apply_spooled(
                            session, row, mail, settings=self.settings, now=now,
                            directory=directory, applied=applied,
                        )  # fmt: skip
                except SQLAlchemyError as exc:
                    log.warning("raw mail %s: database error, will retry: %s", row.id, exc)
                    failed = (index, f"{type(exc).__name__}: {exc}")
                    break
                log.info("raw mail %s: %s", row.id, result.outcome)
                settled += 1
                if time.perf_counter() - applied_at > MAX_TRANSACTION_SECONDS:
                    for rest, _ in reversed(parsed[index + 1 :]):
                        self._pending.appendleft(rest)
                    break
            commit_at = time.perf_counter()
        self.stats.phases["apply"] += commit_at - applied_at
        self.stats.phases["commit"] += time.perf_counter() - commit_at
        self.stats.batches += 1
        self.stats.applied += settled
        if failed is not None:
            self._retry_later([item for item, _ in parsed[failed[0] :]], failed[1])
        return settled

    def _retry_later(self, items: list[Pending], error: str) -> None:
        """Put the rest of a batch back; the row that failed too often becomes ``failed``."""
        first = items[0]
        first.failures += 1
        if first.failures >= MAX_ATTEMPTS:
            with self.writes() as session, session.begin():
                session.execute(
                    update(RawMail)
                    .where(RawMail.id == first.raw_id, RawMail.state == "spooled")
                    .values(state="failed", error=error[:4000], processed_at=self.clock())
                )
            items = items[1:]
        for item in reversed(items):
            self._pending.appendleft(item)
        self._stop.wait(0.05 * first.failures)


def start_applier(
    settings: Settings, engine: Engine, **options: Any
) -> tuple[Applier, threading.Thread]:
    applier = Applier(engine, settings, **options)
    thread = threading.Thread(target=applier.run, name="intake-applier", daemon=True)
    thread.start()
    return applier, thread
