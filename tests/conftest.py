"""Shared fixtures: a fresh database per test on SQLite and on PostgreSQL, settings,
a running gateway on a free loopback port, and an aiosmtpd sink as the relay.

Every test that asks for ``engine`` (directly or through ``gateway``, ``app``
and friends) runs twice: once on SQLite, once on PostgreSQL. PostgreSQL comes
from ``HELPDESK_TEST_POSTGRES_URL`` (default: database ``test`` on
127.0.0.1:5432); when it is unreachable those cases are skipped, unless
``HELPDESK_TEST_REQUIRE_POSTGRES=1`` (as CI sets) makes that an error.
"""

from __future__ import annotations

import os
import shutil
import smtplib
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from helpdesk import bootstrap, db
from helpdesk.accounts import users
from helpdesk.clock import utcnow
from helpdesk.settings import Settings
from helpdesk.subscribers import writing_sessions
from helpdesk.tickets.operation import install_guard

# For the whole run: a ticket's status, priority, assignee, queue, tags or merge,
# or a history row, written anywhere but in the ticket lifecycle raises DirectWrite.
install_guard()

PG_URL = os.environ.get(
    "HELPDESK_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REQUIRE_PG = os.environ.get("HELPDESK_TEST_REQUIRE_POSTGRES") == "1"
BACKENDS = [
    b for b in os.environ.get("HELPDESK_TEST_BACKENDS", "sqlite,postgresql").split(",") if b
]
SECRET = "test-secret-key-not-for-production"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pg_available() -> str | None:
    try:
        engine = create_engine(db.normalise_url(PG_URL), connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
        return None
    except Exception as exc:  # pragma: no cover - depends on the machine
        return f"PostgreSQL not reachable at {PG_URL}: {exc.__class__.__name__}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", BACKENDS, scope="session")


def _settings(instance: Path, url: str, **overrides: object) -> Settings:
    return Settings.load(
        environ={},
        instance_path=instance,
        dotenv_path=None,
        database_url=url,
        secret_key=SECRET,
        mail_domain="example.com",
        # The test MX: its Authentication-Results prove agents (tests/corpus/threading).
        **{"parse_workers": 1, "trusted_authserv_id": "mx.example.com", **overrides},
    )


@pytest.fixture(scope="session")
def database_template(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated, seeded database to copy per test (file copy or CREATE DATABASE ... TEMPLATE)."""
    if backend == "sqlite":
        path = tmp_path_factory.mktemp("template") / "template.db"
        url = f"sqlite:///{path}"
    else:
        reason = _pg_available()
        if reason:
            if REQUIRE_PG:
                pytest.fail(reason)
            pytest.skip(reason)
        name = f"hd_tmpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        _pg_admin(f'CREATE DATABASE "{name}"')
        url = str(make_url(db.normalise_url(PG_URL)).set(database=name).render_as_string(False))
    settings = _settings(tmp_path_factory.mktemp("tmpl-instance"), url)
    engine = db.make_engine(settings)
    db.upgrade(engine)
    with db.session_factory(engine, write=True)() as session, session.begin():
        bootstrap.seed(session, settings, now=utcnow())
    engine.dispose()
    yield url
    if backend == "postgresql":
        _pg_admin(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')


def _pg_admin(sql: str) -> None:
    engine = create_engine(db.normalise_url(PG_URL), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(sql))
    engine.dispose()


@pytest.fixture
def database_url(backend: str, database_template: str, tmp_path: Path) -> Iterator[str]:
    """A fresh copy of the template database for this test."""
    if backend == "sqlite":
        path = tmp_path / "helpdesk.db"
        shutil.copy(make_url(database_template).database, path)
        yield f"sqlite:///{path}"
        return
    name = f"hd_test_{uuid.uuid4().hex[:12]}"
    _pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{make_url(database_template).database}"')
    yield str(make_url(database_template).set(database=name).render_as_string(False))
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    instance = tmp_path / "instance"
    instance.mkdir(exist_ok=True)
    return _settings(instance, database_url)


@pytest.fixture
def engine(settings: Settings):  # type: ignore[no-untyped-def]
    engine = db.make_engine(settings)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine, settings: Settings):  # type: ignore[no-untyped-def]
    """Write sessions as the product makes them: with the standard subscribers."""
    return writing_sessions(engine, settings)


def outbox_bytes(row) -> bytes:  # type: ignore[no-untyped-def]
    """The bytes the worker sends for an outbox row (built from it, as at send time)."""
    from helpdesk.outbound.ticket_mail import mime_bytes

    return mime_bytes(row)


@pytest.fixture
def session(engine):  # type: ignore[no-untyped-def]
    """A session for reading what the code under test committed.

    It runs in autocommit mode, so after ``session.expire_all()`` every query
    sees the latest commits (a SQLite read transaction would keep its snapshot).
    """
    from sqlalchemy.orm import Session

    with Session(bind=engine.execution_options(isolation_level="AUTOCOMMIT")) as session:
        yield session


SETTLE_TIMEOUT = 60.0  # seconds for the applier to apply what was spooled


@dataclass
class RunningGateway:
    """The gateway and an applier beside it, as ``helpdesk serve`` runs them."""

    host: str
    port: int
    gateway: object
    applier: object = None
    applier_thread: object = None
    engine: object = None

    def smtp(self) -> smtplib.SMTP:
        return smtplib.SMTP(self.host, self.port, timeout=30)

    def send(
        self,
        raw: bytes,
        *,
        mail_from: str = "customer@customer.example",
        to: list[str] | None = None,
    ) -> dict:
        """Send ``raw`` and wait until it is applied; returns smtplib's refused-recipients
        dict (raises on failure)."""
        with self.smtp() as client:
            refused = client.sendmail(mail_from, to or ["help-desk@example.com"], raw)
        self.settle()
        return refused

    def settle(self, timeout: float = SETTLE_TIMEOUT) -> None:
        """Wait (bounded) until no spooled mail is left unapplied."""
        from helpdesk.intake.spool import pending

        if self.engine is None:
            return
        deadline = time.monotonic() + timeout
        while True:
            with db.session_factory(self.engine)() as session:
                if pending(session) == 0:
                    return
            if time.monotonic() > deadline:
                pytest.fail(f"spooled mail not applied within {timeout} s")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop the gateway and the applier (once; later calls do nothing)."""
        if self.gateway is None:
            return
        self.gateway.stop()  # type: ignore[attr-defined]
        self.gateway = None
        if self.applier is not None:
            self.applier.stop()  # type: ignore[attr-defined]
            self.applier_thread.join(30)  # type: ignore[attr-defined]
            self.applier.close()  # type: ignore[attr-defined]


def start_gateway(settings: Settings, engine, *, applier: bool = True) -> RunningGateway:  # type: ignore[no-untyped-def]
    from helpdesk.intake.applier import start_applier
    from helpdesk.intake.wakeup import Wakeup
    from mailgate.server import start_gateway as start

    port = free_port()
    if not applier:
        return RunningGateway("127.0.0.1", port, start(settings, "127.0.0.1", port, engine))
    wakeup = Wakeup(engine)
    running, thread = start_applier(settings, engine, wakeup=wakeup)
    gateway = start(settings, "127.0.0.1", port, engine, on_commit=wakeup.notify)
    return RunningGateway("127.0.0.1", port, gateway, running, thread, engine)


@pytest.fixture
def gateway(settings: Settings, engine) -> Iterator[RunningGateway]:  # type: ignore[no-untyped-def]
    running = start_gateway(settings, engine)
    yield running
    running.stop()


@pytest.fixture
def make_user(engine):  # type: ignore[no-untyped-def]
    """Create a user and return (user email, API token)."""

    def make(email: str, role: str = "agent", queues_: list[str] | None = None) -> str:
        with db.session_factory(engine, write=True)() as session, session.begin():
            user = users.add_or_update(
                session, email, role=role, queue_slugs=queues_, password="password123", now=utcnow()
            )
            return users.create_token(session, user, now=utcnow())

    return make


@pytest.fixture
def app(settings: Settings, engine):  # type: ignore[no-untyped-def]
    """The web app; every API response it gives must match the OpenAPI document."""
    from helpdesk.web import create_app
    from tests.api_support import check_conformance

    app = create_app(settings, engine)
    app.config.update(TESTING=True)
    failures = check_conformance(app)
    yield app
    assert not failures, "API responses that break the OpenAPI document:\n" + "\n".join(failures)


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    return app.test_client()


class SinkHandler:
    """An aiosmtpd handler that keeps what it receives and can answer with set codes.

    ``replies`` is a list of SMTP replies to give to the next DATA commands
    (e.g. ``["451 4.3.0 busy"]``); when empty, DATA gets 250.
    """

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.replies: list[str] = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        if self.replies:
            return self.replies.pop(0)
        self.messages.append(
            (envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
        )
        return "250 2.0.0 OK"


@dataclass
class Relay:
    host: str
    port: int
    handler: SinkHandler
    controller: object

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def messages(self) -> list[tuple[str, list[str], bytes]]:
        return self.handler.messages


def start_relay(port: int | None = None) -> Relay:
    from aiosmtpd.controller import Controller

    handler = SinkHandler()
    port = port or free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    return Relay("127.0.0.1", port, handler, controller)


@pytest.fixture
def relay() -> Iterator[Relay]:
    """An aiosmtpd sink standing in for the outbound smarthost."""
    running = start_relay()
    yield running
    running.controller.stop()


@pytest.fixture
def relay_settings(settings: Settings, relay: Relay) -> Settings:
    """Settings whose HELPDESK_SMTP_RELAY is the test relay."""
    from dataclasses import replace

    return replace(settings, smtp_relay=relay.address)
