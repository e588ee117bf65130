"""Database: engines and sessions for SQLite and PostgreSQL, and schema upgrades.

SQLite runs in WAL mode with ``synchronous=FULL`` so that a commit is on disk
before the gateway answers 250, and with a busy timeout so that a locked
database fails within ``database_timeout`` seconds instead of hanging. Every
write transaction on SQLite (``session_factory(write=True)``: the gateway's
spool, the applier, the worker, the web app's POSTs) begins with ``BEGIN
IMMEDIATE``, so it takes the one write lock up front and never fails later
on a stale snapshot. It waits for the lock by trying again every
millisecond until ``database_timeout``, rather than with SQLite's own busy
handler, whose sleeps grow to 100 ms: with several processes writing in
short transactions, a writer that sleeps that long keeps missing the moments
the lock is free. PostgreSQL uses psycopg 3 with a connect timeout and a
lock timeout for the same reasons.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Connection, CursorResult, Engine, Result, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.instance import create_private_file, private_dir
from helpdesk.resources import resource_dir
from helpdesk.settings import Settings

if TYPE_CHECKING:
    from alembic.config import Config


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` URLs and use psycopg 3 for them."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(settings: Settings, *, pool_size: int = 5) -> Engine:
    """Create the engine for ``settings.database_url`` with durable, bounded settings."""
    url = make_url(normalise_url(settings.database_url))
    timeout = settings.database_timeout
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database and database != ":memory:" and not url.query.get("uri"):
            # 0600 from the start; SQLite gives -wal and -shm the same mode.
            create_private_file(private_dir(Path(database).parent) / Path(database).name)
        engine = create_engine(
            url,
            connect_args={"timeout": timeout, "check_same_thread": False},
            pool_size=pool_size,
            max_overflow=10,
            hide_parameters=True,  # no session id, token or address in a logged error
        )
        _configure_sqlite(engine, timeout)
        return engine
    return create_engine(
        url,
        connect_args={
            "connect_timeout": max(1, int(timeout)),
            # A statement stuck behind a lock fails instead of holding the sender.
            "options": f"-c lock_timeout={int(timeout * 1000)}",
        },
        pool_size=pool_size,
        max_overflow=10,
        pool_pre_ping=True,
        hide_parameters=True,
    )


def _configure_sqlite(engine: Engine, timeout: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        # Let SQLAlchemy emit BEGIN itself (pysqlite's own handling is lazy).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        cursor.execute("PRAGMA cache_size=-65536")  # 64 MiB instead of 2: lists and search
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get("isolation_level") == "AUTOCOMMIT":
            return
        if options.get("immediate"):
            _begin_immediate(conn, timeout)
        else:
            conn.exec_driver_sql("BEGIN")


LOCK_POLL = 0.001  # seconds between tries for SQLite's write lock


def _begin_immediate(conn: Connection, timeout: float) -> None:
    """``BEGIN IMMEDIATE``, tried every millisecond until ``timeout`` (then the error)."""
    deadline = time.monotonic() + timeout
    conn.exec_driver_sql("PRAGMA busy_timeout=0")
    try:
        while True:
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                return
            except OperationalError as exc:
                if "locked" not in str(exc.orig) or time.monotonic() >= deadline:
                    raise
            time.sleep(LOCK_POLL)
    finally:
        conn.exec_driver_sql(f"PRAGMA busy_timeout={int(timeout * 1000)}")


def rowcount(result: Result[Any]) -> int:
    """How many rows an INSERT, UPDATE or DELETE changed (0 when the driver cannot say).
    ``Session.execute`` declares a plain ``Result``; for these it is a ``CursorResult``."""
    return max(cast(CursorResult[Any], result).rowcount, 0)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def session_factory(engine: Engine, *, write: bool = False) -> sessionmaker[Session]:
    """Sessions for reading, or (``write=True``) for transactions that will write."""
    bind = engine.execution_options(immediate=True) if write else engine
    return sessionmaker(bind=bind, expire_on_commit=False)


def include_name(name: str | None, type_: str, parent_names: Mapping[str, str | None]) -> bool:
    """For Alembic: leave the full-text search objects (made in raw SQL) out of comparisons."""
    return not (name or "").startswith(("messages_fts", "fts_"))


def alembic_config(engine_or_url: Engine | str) -> Config:
    """An Alembic config pointing at our migrations and the given database."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resource_dir("migrations")))
    if isinstance(engine_or_url, str):
        config.set_main_option("sqlalchemy.url", normalise_url(engine_or_url))
    else:
        config.attributes["engine"] = engine_or_url
    return config


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent)."""
    from alembic import command

    command.upgrade(alembic_config(engine), "head")


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at, or None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


class SchemaOutOfDate(RuntimeError):
    """The database is missing or behind the code: run ``helpdesk init``."""


def require_current(engine: Engine) -> None:
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise SchemaOutOfDate(
            f"database schema is at {current or 'nothing'}, the code needs {head}: "
            "run `helpdesk init` first"
        )
