"""Nothing secret in files others can read or in logged errors (issue #10, row 7;
Build item 6), without a server: the instance folder is created 0700, the
secret key and the SQLite database (with ``-wal`` and ``-shm``) 0600 from the
moment they exist, whatever the umask; and a database error names its SQL but
never its parameters, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from helpdesk import db
from helpdesk.instance import create_private_file
from helpdesk.models import WebSession
from helpdesk.settings import Settings
from tests.test_browser_signin import database_locked

MARKER = "a-session-id-that-must-not-be-logged"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive umask: modes must come from our code, not from it."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_instance_folder_and_secret_key_are_private(tmp_path: Path, open_umask) -> None:
    instance = tmp_path / "srv" / "instance"
    settings = Settings.load(environ={}, instance_path=instance, dotenv_path=None)
    key = settings.with_secret_key().secret_key
    assert len(key) >= 40
    assert mode(instance) == 0o700
    assert mode(instance / "secret_key") == 0o600
    assert sorted(p.name for p in instance.iterdir()) == ["secret_key"]  # no temp file left
    assert settings.with_secret_key().secret_key == key  # read back, not made again


# Python's audit events (``open``, ``os.chmod``) of what the code does to files; the
# hook cannot be removed, so it records only while a test switches it on.
_RECORDING: list[list[tuple[str, tuple]]] = []


def _audit(event: str, args: tuple) -> None:
    if _RECORDING and event in ("open", "os.chmod", "os.fchmod"):
        _RECORDING[-1].append((event, args))


sys.addaudithook(_audit)


@pytest.fixture
def file_events() -> Iterator[list[tuple[str, tuple]]]:
    events: list[tuple[str, tuple]] = []
    _RECORDING.append(events)
    try:
        yield events
    finally:
        _RECORDING.remove(events)


def test_secret_key_is_created_0600_not_changed_after(
    tmp_path: Path, open_umask, file_events
) -> None:
    """With umask 0 a file gets exactly the mode it was created with: 0600 at the end,
    and no chmod on the way, means 0600 from the first moment."""
    instance = tmp_path / "instance"
    Settings.load(environ={}, instance_path=instance, dotenv_path=None).with_secret_key()
    assert mode(instance / "secret_key") == 0o600
    chmods = [args for event, args in file_events if event != "open"]
    assert chmods == []
    created = [
        args[0]
        for event, args in file_events
        if event == "open" and not isinstance(args[0], int) and args[2] & os.O_CREAT
    ]
    assert len(created) == 1 and Path(created[0]).parent == instance, created


def test_sqlite_database_and_its_wal_are_private(tmp_path: Path, open_umask) -> None:
    instance = tmp_path / "instance"
    url = f"sqlite:///{instance / 'helpdesk.db'}"
    settings = Settings.load(environ={}, instance_path=instance, dotenv_path=None, database_url=url)
    engine = db.make_engine(settings)
    try:
        db.upgrade(engine)
        with engine.connect() as conn:  # holds -wal and -shm open
            conn.execute(text("SELECT count(*) FROM users")).scalar()
            files = {p.name: mode(p) for p in instance.iterdir()}
    finally:
        engine.dispose()
    assert mode(instance) == 0o700
    assert files == {"helpdesk.db": 0o600, "helpdesk.db-wal": 0o600, "helpdesk.db-shm": 0o600}


def test_an_existing_database_file_is_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "helpdesk.db"
    path.write_bytes(b"")
    path.chmod(0o640)
    assert create_private_file(path) is False
    assert mode(path) == 0o640


def test_every_engine_hides_sql_parameters(settings: Settings) -> None:
    engine = db.make_engine(settings)
    try:
        assert engine.hide_parameters
    finally:
        engine.dispose()


def test_a_locked_database_error_names_no_parameter(settings: Settings) -> None:
    quick = replace(settings, database_timeout=0.5)
    engine = db.make_engine(quick)
    try:
        with (
            database_locked(settings),
            pytest.raises(OperationalError) as raised,
            db.session_factory(engine)() as session,
            session.begin(),
        ):
            # PostgreSQL: the read waits for the lock; SQLite: the write does.
            session.scalars(select(WebSession).where(WebSession.id_hash == MARKER)).all()
            session.execute(
                text("UPDATE web_sessions SET last_seen_at = last_seen_at WHERE id_hash = :id"),
                {"id": MARKER},
            )
    finally:
        engine.dispose()
    message = str(raised.value)
    assert "web_sessions" in message  # the statement is there, to diagnose
    assert MARKER not in message and "hidden" in message.lower()
