"""The ``helpdesk`` command (click, via Flask's CLI group).

Each command parses its options, opens what it needs and calls one service;
the work itself lives in the core and in ``mailgate``.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click
from flask.cli import FlaskGroup
from sqlalchemy import Engine

from helpdesk import bootstrap, db, subscribers
from helpdesk.accounts import users
from helpdesk.clock import utcnow
from helpdesk.settings import Settings, SettingsError

if TYPE_CHECKING:
    from flask import Flask
    from waitress.server import BaseWSGIServer, MultiSocketServer

    from helpdesk.tickets.dispatch import Dispatcher

log = logging.getLogger("helpdesk")


def _create_app() -> Flask:
    from helpdesk.web import create_app

    return create_app()


@click.group(cls=FlaskGroup, create_app=_create_app, add_default_commands=False)
def cli() -> None:
    """helpdesk: a support desk that turns email into tickets."""


def _load() -> tuple[Settings, Engine]:
    try:
        settings = Settings.load().with_secret_key()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    return settings, db.make_engine(settings)


def _host_port(value: str, option: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}", param_hint=option)
    return host.strip("[]"), int(port)


def _init(settings: Settings, engine: Engine) -> list[str]:
    db.upgrade(engine)
    with db.session_factory(engine, write=True)() as session, session.begin():
        created = bootstrap.seed(session, settings, now=utcnow())
        admin = bootstrap.first_admin(session, settings, now=utcnow())
    if admin is not None:
        click.echo(
            f"created the first user: {admin[0]} with password {admin[1]}\n"
            "  (shown once; change it with: helpdesk user add "
            f"{admin[0]} --role admin --password-stdin)"
        )
    return [q.slug for q in created]


def _require_schema(engine: Engine) -> None:
    try:
        db.require_current(engine)
    except db.SchemaOutOfDate as exc:
        raise click.ClickException(str(exc)) from exc


def _wait_for_signal(every_second: Callable[[], None] | None = None) -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        if every_second is not None:
            every_second()


@cli.command("init", with_appcontext=False)
def init_command() -> None:
    """Create or upgrade the database and seed the default queues (idempotent)."""
    settings, engine = _load()
    created = _init(settings, engine)
    click.echo(f"database ready at {engine.url.render_as_string(hide_password=True)}")
    for slug in created:
        click.echo(f"created queue {slug} <{slug}@{settings.mail_domain}>")


def _web_server(
    settings: Settings,
    engine: Engine,
    host: str,
    port: int,
    dispatcher: Dispatcher | None = None,
) -> BaseWSGIServer | MultiSocketServer:
    from waitress.server import create_server

    from helpdesk.web import create_app

    app = create_app(settings, engine, dispatcher or subscribers.standard(settings))
    return create_server(app, host=host, port=port, threads=8)


@cli.command("serve", with_appcontext=False)
@click.option("--web", "web_addr", default="127.0.0.1:8080", show_default=True)
@click.option("--smtp", "smtp_addr", default="127.0.0.1:2525", show_default=True)
def serve_command(web_addr: str, smtp_addr: str) -> None:
    """Run everything: web app here, mail gateway and worker as child processes
    (creates the database if needed)."""
    from helpdesk.processes import Child, Supervisor

    settings, engine = _load()
    _init(settings, engine)
    web_host, web_port = _host_port(web_addr, "--web")
    _host_port(smtp_addr, "--smtp")  # refuse a bad value here, not in the child
    engine.dispose()  # the children open their own
    supervisor = Supervisor(
        [Child("mailgate", ["mailgate", "--smtp", smtp_addr]), Child("worker", ["worker"])]
    )
    supervisor.start()
    try:
        server = _web_server(settings, db.make_engine(settings), web_host, web_port)
        thread = threading.Thread(target=server.run, name="web", daemon=True)
        thread.start()
        click.echo(f"helpdesk: web on http://{web_host}:{web_port}/, SMTP on {smtp_addr}")
        try:
            _wait_for_signal(supervisor.check)
        finally:
            server.close()
    finally:
        supervisor.stop()


@cli.command("web", with_appcontext=False)
@click.option("--web", "web_addr", default="127.0.0.1:8080", show_default=True)
def web_command(web_addr: str) -> None:
    """Run the web app alone."""
    settings, engine = _load()
    _require_schema(engine)
    host, port = _host_port(web_addr, "--web")
    server = _web_server(settings, engine, host, port)
    threading.Thread(target=server.run, name="web", daemon=True).start()
    click.echo(f"helpdesk web on http://{host}:{port}/")
    try:
        _wait_for_signal()
    finally:
        server.close()


@cli.command("mailgate", with_appcontext=False)
@click.option("--smtp", "smtp_addr", default="127.0.0.1:2525", show_default=True)
def mailgate_command(smtp_addr: str) -> None:
    """Run the inbound SMTP gateway alone."""
    from mailgate.server import start_gateway

    settings, engine = _load()
    _require_schema(engine)
    host, port = _host_port(smtp_addr, "--smtp")
    gateway = start_gateway(settings, host, port, engine)
    click.echo(f"helpdesk mailgate on {host}:{port}", err=True)
    try:
        _wait_for_signal()
    finally:
        gateway.stop()


@cli.command("worker", with_appcontext=False)
def worker_command() -> None:
    """Run the worker alone: applies spooled mail, delivers the outbox, runs periodic jobs."""
    from helpdesk.intake.applier import start_applier
    from helpdesk.scheduler import start_scheduler
    from mailgate.outbox_sender import start_worker

    settings, engine = _load()
    _require_schema(engine)
    dispatcher = subscribers.standard(settings)
    applier, applier_thread = start_applier(settings, engine, dispatcher=dispatcher)
    worker, thread = start_worker(settings, engine, dispatcher)
    scheduler, _ = start_scheduler(settings, engine, dispatcher)
    click.echo(f"helpdesk worker delivering to {settings.smtp_relay}", err=True)
    try:
        _wait_for_signal()
    finally:
        applier.stop()
        scheduler.stop()
        worker.stop()
        applier_thread.join(30)
        applier.close()
        thread.join(30)


@cli.group("user")
def user_group() -> None:
    """Manage users."""


@user_group.command("add", with_appcontext=False)
@click.argument("email")
@click.option("--role", type=click.Choice(["agent", "manager", "admin"]), required=True)
@click.option("--queue", "queue_slugs", multiple=True, help="Once per queue.")
@click.option("--name", default=None)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def user_add_command(
    email: str, role: str, queue_slugs: tuple[str, ...], name: str | None, password_stdin: bool
) -> None:
    """Create or update a user."""
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else None
    _settings, engine = _load()
    _require_schema(engine)
    with db.session_factory(engine, write=True)() as session, session.begin():
        try:
            user = users.add_or_update(
                session, email, role=role, queue_slugs=list(queue_slugs) if queue_slugs else None,
                password=password, name=name, now=utcnow(),
            )  # fmt: skip
        except users.UserError as exc:
            raise click.ClickException(str(exc)) from exc
        slugs = ", ".join(q.slug for q in user.queues) or "none"
        click.echo(f"{user.email}: role {user.role}, queues {slugs}")


@cli.group("token")
def token_group() -> None:
    """Manage API tokens."""


@token_group.command("create", with_appcontext=False)
@click.argument("email")
@click.option(
    "--scope", type=click.Choice(["read", "write"]), default="read", show_default=True,
    help="write: the token may change what the user may change.",
)  # fmt: skip
@click.option("--name", default="", help="Shown in ticket history: 'by API token NAME'.")
def token_create_command(email: str, scope: str, name: str) -> None:
    """Print a new API token for the user (only its hash is kept: store it now)."""
    _settings, engine = _load()
    _require_schema(engine)
    with db.session_factory(engine, write=True)() as session, session.begin():
        user = users.by_email(session, email)
        if user is None:
            raise click.ClickException(f"no such user: {email}")
        try:
            secret = users.create_token(session, user, now=utcnow(), scope=scope, name=name)
        except users.UserError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(secret)


@cli.group("mail")
def mail_group() -> None:
    """Stored mail."""


@mail_group.command("status", with_appcontext=False)
def mail_status_command() -> None:
    """Counts of spooled, applied, unparsed and failed mail; the ones that need a look."""
    from helpdesk.intake import pipe

    _settings, engine = _load()
    _require_schema(engine)
    with db.session_factory(engine)() as session:
        state = pipe.status(session)
    click.echo(" ".join(f"{name} {count}" for name, count in state.counts.items()))
    waiting = state.waiting_for(utcnow())
    click.echo(f"oldest unapplied: {f'{waiting.total_seconds():.1f} s ago' if waiting else '-'}")
    for problem in state.problems:
        ticket = f"ticket {problem.ticket_number}" if problem.ticket_number else "no ticket"
        click.echo(
            f"raw mail {problem.raw_mail_id} {problem.state} {problem.received_at:%Y-%m-%d %H:%M} "
            f"from <{problem.mail_from}> {problem.size} bytes, {ticket}: {problem.reason}"
        )


@mail_group.command("reprocess", with_appcontext=False)
@click.argument("ids", nargs=-1, type=int)
def mail_reprocess_command(ids: tuple[int, ...]) -> None:
    """Put failed mail (all, or the given raw mail ids) back in the spool for the applier."""
    from helpdesk.intake import pipe

    _settings, engine = _load()
    _require_schema(engine)
    with db.session_factory(engine, write=True)() as session, session.begin():
        count = pipe.reprocess(session, list(ids) or None)
    click.echo(f"{count} failed messages back in the spool; the worker applies them")


@cli.group("tls")
def tls_group() -> None:
    """TLS certificates for the gateway."""


@tls_group.command("selfsigned", with_appcontext=False)
@click.option("--dir", "directory", default="instance/tls", show_default=True, type=click.Path())
@click.option("--hostname", default="localhost", show_default=True)
def tls_selfsigned_command(directory: str, hostname: str) -> None:
    """Write a self-signed certificate and key for development STARTTLS."""
    from mailgate.tls import write_self_signed

    cert, key = write_self_signed(Path(directory), hostname)
    click.echo(f"HELPDESK_TLS_CERT={cert}\nHELPDESK_TLS_KEY={key}")


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Per-command chatter from aiosmtpd and alembic drowns what matters.
    for noisy in ("mail.log", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    cli()
