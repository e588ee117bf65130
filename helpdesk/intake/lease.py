"""A lease: at most one holder of a named job across all processes and hosts.

The holder's row names it (``host:pid:nonce``) and expires unless renewed.
Every transaction that acts under the lease first renews it with an
``UPDATE ... WHERE holder = me``: that fails once someone else took the
lease over, and it locks the row until the transaction ends, so a takeover
waits for the old holder's last batch to commit or roll back (a fencing
check, not just a timer).

A lease is taken over when it expired, or at once when its holder is known
to be dead: a process on this host that no longer exists, or (PostgreSQL)
a holder whose session-level advisory lock is free again, which the server
releases as soon as the holder's connection goes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import zlib
from datetime import datetime, timedelta
from typing import Any, cast

import psycopg
from sqlalchemy import Engine, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.pool import PoolProxiedConnection

from helpdesk.db import rowcount
from helpdesk.models import Lease

log = logging.getLogger(__name__)

TTL = timedelta(seconds=30)


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _dead_here(holder: str) -> bool:
    """Is ``holder`` a process of this host that no longer runs?"""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


def acquire(
    session: Session, name: str, holder: str, *, now: datetime, holder_gone: bool = False
) -> bool:
    """Take or keep the lease; True when ``holder`` has it until ``now + TTL``.

    ``holder_gone``: the caller knows the current holder is dead (its advisory lock is free).
    """
    row = session.get(Lease, name, with_for_update=True)
    if row is None:
        try:
            with session.begin_nested():
                session.add(Lease(name=name, holder=holder, acquired_at=now, expires_at=now + TTL))
        except IntegrityError:
            return False  # another process created it first
        return True
    if row.holder == holder:
        row.expires_at = now + TTL
        return True
    if row.expires_at <= now or holder_gone or _dead_here(row.holder):
        log.info("lease %s taken over from %s", name, row.holder)
        row.holder, row.acquired_at, row.expires_at = holder, now, now + TTL
        return True
    return False


def renew(session: Session, name: str, holder: str, *, now: datetime) -> bool:
    """Extend the lease if ``holder`` still has it; locks the row for this transaction."""
    stmt = (
        update(Lease)
        .where(Lease.name == name, Lease.holder == holder)
        .values(expires_at=now + TTL)
        .execution_options(synchronize_session=False)
    )
    return rowcount(session.execute(stmt)) == 1


def release(session: Session, name: str, holder: str, *, now: datetime) -> None:
    stmt = (
        update(Lease)
        .where(Lease.name == name, Lease.holder == holder)
        .values(expires_at=now)
        .execution_options(synchronize_session=False)
    )
    session.execute(stmt)


class Liveness:
    """PostgreSQL only: a session-level advisory lock held while this process may hold the
    lease. ``holder_gone`` is True when we got it: whoever had it before has no connection."""

    def __init__(self, engine: Engine, name: str) -> None:
        self._engine = engine
        self._key = zlib.crc32(name.encode())
        self._connection: PoolProxiedConnection | None = None
        self.held = False

    def try_hold(self) -> bool:
        if self._engine.dialect.name != "postgresql":
            return False
        if self.held:
            return True
        try:
            if self._connection is None:
                self._connection = self._engine.raw_connection()
                driver = cast(psycopg.Connection[Any], self._connection.driver_connection)
                driver.autocommit = True
            cursor = self._connection.cursor()
            cursor.execute("SELECT pg_try_advisory_lock(%s)", (self._key,))
            row = cursor.fetchone()
            self.held = bool(row and row[0])
            cursor.close()
        except Exception:
            log.warning("advisory lock check failed", exc_info=True)
            self.close()
        return self.held

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.invalidate()  # closes it: the server frees the lock
            self._connection = None
        self.held = False
