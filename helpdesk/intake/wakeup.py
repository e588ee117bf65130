"""Waking the applier as soon as mail is spooled.

Three sources set one event: ``notify()`` from the same process (the
gateway's writer thread in ``helpdesk serve``); on PostgreSQL, ``LISTEN
helpdesk_intake`` on a connection of its own (the spool sends ``NOTIFY`` in
the transaction that stores the mail, so it arrives with the commit); on
SQLite, ``PRAGMA data_version`` polled every few milliseconds on a connection
of its own, which changes whenever another connection commits (a read of
a counter in shared memory: no I/O, no lock).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from typing import Any, cast

import psycopg
from sqlalchemy import Engine

from helpdesk.intake.spool import NOTIFY_CHANNEL

log = logging.getLogger(__name__)


class Wakeup:
    def __init__(self, engine: Engine | None = None, *, poll: float = 0.01) -> None:
        self._event = threading.Event()
        self._stop = threading.Event()
        self._engine = engine
        self._poll = poll
        self._thread: threading.Thread | None = None

    def notify(self) -> None:
        self._event.set()

    def wait(self, timeout: float) -> bool:
        """Block until woken or ``timeout`` passed; True when woken."""
        woken = self._event.wait(timeout)
        self._event.clear()
        return woken

    def start(self) -> Wakeup:
        """Also watch the database for commits by other processes."""
        if self._engine is None or self._thread is not None:
            return self
        target = self._listen if self._engine.dialect.name == "postgresql" else self._watch_sqlite
        self._thread = threading.Thread(target=target, name="intake-wakeup", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._event.set()
        if self._thread is not None:
            self._thread.join(5)

    def _watch_sqlite(self) -> None:
        assert self._engine is not None
        path = self._engine.url.database or ""
        if not path or path == ":memory:":
            return
        connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            last = None
            while not self._stop.wait(self._poll):
                version = connection.execute("PRAGMA data_version").fetchone()[0]
                if version != last:
                    if last is not None:
                        self._event.set()
                    last = version
        except sqlite3.Error:
            log.exception("watching the database for new mail failed; polling only")
        finally:
            connection.close()

    def _listen(self) -> None:
        assert self._engine is not None
        while not self._stop.is_set():
            try:
                raw = self._engine.raw_connection()
            except Exception:
                log.warning("cannot LISTEN for new mail; retrying", exc_info=True)
                self._stop.wait(1.0)
                continue
            try:
                connection = cast(psycopg.Connection[Any], raw.driver_connection)
                connection.autocommit = True
                connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
                while not self._stop.is_set():
                    for _ in connection.notifies(timeout=0.5, stop_after=1):
                        self._event.set()
            except Exception:
                log.warning("LISTEN connection lost; reconnecting", exc_info=True)
                self._stop.wait(0.5)
            finally:
                with contextlib.suppress(Exception):
                    raw.invalidate()
