"""Outbound benchmark: the outbox worker draining queued mail, next to a plain smtplib loop.

What it measures
----------------
N mails (``--mails``, default 10,000) are queued the way the real services
queue them, ``--mails-per-ticket`` (default 3) for each ticket: a ticket is
opened with an inbound customer message (``helpdesk.tickets.conversation.open_ticket``),
the acknowledgement subscriber acknowledges it, and the rest are agent
replies of about 3 KB of text (``conversation.reply``: the queue's templates,
text plus HTML alternative, threading headers). Only the acknowledgement is
subscribed (no notifications, no SLA clocks): they would add mails or only
slow the setup. Rows describe their mail; the worker builds the MIME when it
sends (``helpdesk.outbound.ticket_mail.mime_bytes``), so the worker phase
includes building. That gives realistic mails of about 5 KB on average (the
summary prints the mean). The database is fresh: a SQLite file in
a temp dir (WAL, ``synchronous=FULL``, as ``helpdesk.db.make_engine``
configures it), or with ``--database-url`` a scratch database on a PostgreSQL
server; either way migrated with ``helpdesk.db.upgrade`` and seeded with
``helpdesk.bootstrap.seed`` before anything is timed.

Then, in the same run and to the same sink, one after the other:

* ``smtplib``: one ``smtplib.SMTP`` connection sends the same N mails' bytes
  (built from the outbox rows before the clock starts, same envelope) with
  ``sendmail`` in a loop: the cost of SMTP on loopback and of the sink alone;
* ``worker``: the real ``mailgate.outbox_sender.OutboxWorker`` (production
  batch size, no DKIM key configured) runs ``run_once`` in a bounded loop until
  a round finds nothing due; each round claims its rows in one transaction,
  sends them over one relay connection and records every outcome in its own
  transaction. ``--workers K`` runs K such workers in threads on one engine
  (PostgreSQL only: there they claim with ``FOR UPDATE SKIP LOCKED``; the
  design has one claimer on SQLite).

The summary prints mails/s for both, the ratio worker/smtplib and the
benchmark process's CPU seconds per 1,000 mails for each phase. Both phases
are verified: the sink must have received exactly N messages with N distinct
Message-IDs each time, and after the worker every outbox row must be ``sent``
after exactly one attempt (the exit status is 1 otherwise).

The sink
--------
A do-nothing ``aiosmtpd`` ``Controller`` whose ``handle_DATA`` counts the
message and returns ``250 OK``. It runs in a child process (this file,
re-executed with ``--serve-sink``) rather than as a thread of the benchmark:
in one process the sink's event loop and the worker (or the smtplib loop)
would take turns on one GIL, so every millisecond the sink spends parsing SMTP
would be charged to the code under test, and the GIL hand-offs between the
two (up to a switch interval each) would add latency to every command of
every mail. As a separate process the sink runs on the other core the way a
real relay would, and the benchmark's own CPU time is the worker's alone. The
child is driven through lines on its stdin (``count``, ``reset``, ``stop``)
and answers in JSON lines on its stdout.

Profiling
---------
``--profile`` runs pyinstrument around the worker phase (first worker thread)
and writes ``bench/out/outbound-<db>.pyinstrument.{txt,html}``; the text is
also printed. Profiled runs are slower: take figures from runs without it.

What the worker costs (November 2026, 2 shared cores)
-----------------------------------------------------
Before mail was built at send time, the worker reached roughly a fifth to a
third of the smtplib loop's mails/s and used about 7 to 9 times its CPU per
mail. The profile shows why: besides one claim transaction per round of 20
and one relay connection per round (about 1 % of the time), every mail gets
its own record transaction (``_record``: BEGIN, SELECT of the row, UPDATE,
COMMIT), about 55 to 70 % of the worker's time, most of it the commit (an
fsync of the WAL on SQLite with ``synchronous=FULL``, a WAL flush on
PostgreSQL). That transaction is what keeps the at-least-once window to one
mail: recording a whole round in one transaction measured about twice the
mails/s at half the CPU on both backends, at the price of resending up to a
round after a crash.

Since the worker builds each message from its row (the MIME work that used
to happen while a mail was received or a reply posted), it spends about 2 ms
more CPU per mail on the standard library's ``email`` package (header
objects, content encoding, serialising). 2,000 mails on SQLite, same
machine, same day: the old code queued them in 13.7 s and sent 257 mails/s
(0.96 CPU s per 1,000); this code queues them in 4.3 s and sends 156 mails/s
(2.87 CPU s per 1,000), with the smtplib loop at 1,370 and 1,754 mails/s in
the two runs. Per mail, queueing plus sending went from about 7.8 to 5.0 ms
of CPU, and none of it is spent while a sender waits for ``250``.

How to run (from the repository root)::

    .venv/bin/python bench/outbound.py                    # 10,000 mails on SQLite
    .venv/bin/python bench/outbound.py --mails 2000 --profile
    .venv/bin/python bench/outbound.py \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres --workers 4

``--database-url`` names a PostgreSQL server and a maintenance database to
connect to; the benchmark creates ``hd_bench_out_<random>`` there and drops it
at the end. Give it more than once (``sqlite`` is the temp SQLite file) to run
several databases in one invocation. Everything listens on and connects to
127.0.0.1 only, on free ports; every wait and every loop is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"
HOST = "127.0.0.1"
MAIL_DOMAIN = "example.com"
SECRET = "bench-secret-key-not-for-production"
QUEUES = ("help-desk", "service-desk", "tech-support")
REPLY_TEXT_SIZE = 3 * 1024  # agent's text; text + HTML alternative make ~5 KB of MIME
QUEUE_BATCH = 500  # tickets per setup transaction
READY_TIMEOUT = 60.0  # seconds for the sink child to listen
CONTROL_TIMEOUT = 60.0  # seconds for the sink child to answer a control line
SMTP_TIMEOUT = 60.0  # seconds for one SMTP command
EXTRA_ROUNDS = 50  # worker rounds allowed beyond N / batch


# --------------------------------------------------------------------------- the sink child


class CountingSink:
    """aiosmtpd handler: count the message and its Message-ID, answer 250, keep nothing else."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.count = 0
            self.octets = 0
            self.message_ids: set[bytes] = set()

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        data = envelope.original_content or b""
        start = data.find(b"\r\nMessage-ID: ")
        end = data.find(b"\r\n", start + 2)
        with self.lock:
            self.count += 1
            self.octets += len(data)
            self.message_ids.add(data[start:end] if start >= 0 else b"")
        return "250 OK"

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return {
                "count": self.count,
                "octets": self.octets,
                "distinct_message_ids": len(self.message_ids),
            }


def serve_sink() -> int:
    """Child process: run the sink until ``stop`` (or EOF) on stdin."""
    from aiosmtpd.controller import Controller

    handler = CountingSink()
    port = _free_port()
    controller = Controller(handler, hostname=HOST, port=port, ready_timeout=READY_TIMEOUT)
    controller.start()
    print(json.dumps({"port": port, "pid": os.getpid()}), flush=True)
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "count":
                print(json.dumps(handler.snapshot()), flush=True)
            elif command == "reset":
                handler.reset()
                print(json.dumps({"reset": True}), flush=True)
            else:
                break
    finally:
        controller.stop()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"cpu": usage.ru_utime + usage.ru_stime}), flush=True)
    return 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class Sink:
    """The sink child, seen from the benchmark."""

    def __init__(self) -> None:
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        self.log = OUT_DIR / "outbound-sink.log"
        with self.log.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--serve-sink"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
            )  # fmt: skip
        hello = self._read(READY_TIMEOUT, f"the sink did not start (see {self.log})")
        self.port: int = hello["port"]

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def _read(self, timeout: float, error: str) -> dict:  # type: ignore[type-arg]
        assert self.proc.stdout is not None
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()))  # type: ignore[union-attr]
        reader.daemon = True
        reader.start()
        reader.join(timeout)
        if not box or not box[0].strip():
            self.kill()
            raise RuntimeError(error)
        return json.loads(box[0])

    def ask(self, command: str) -> dict:  # type: ignore[type-arg]
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read(CONTROL_TIMEOUT, f"the sink did not answer {command!r}")

    def stop(self) -> float:
        """Stop the child; returns its CPU seconds."""
        try:
            return float(self.ask("stop")["cpu"])
        finally:
            try:
                self.proc.wait(CONTROL_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


# --------------------------------------------------------------------------- databases


@dataclass
class Database:
    label: str
    url: str
    admin_url: str = ""  # PostgreSQL: where to drop it from

    def drop(self) -> None:
        if not self.admin_url:
            return
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            name = make_url(self.url).database
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def create_database(spec: str, workdir: Path) -> Database:
    """A fresh, empty database for ``spec`` (``sqlite`` or a PostgreSQL server URL)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from helpdesk import db

    if spec == "sqlite":
        return Database("sqlite", f"sqlite:///{workdir / 'helpdesk.db'}")
    url = make_url(db.normalise_url(spec))
    if url.get_backend_name() != "postgresql" or url.host not in ("127.0.0.1", "localhost"):
        raise SystemExit(f"--database-url: use 'sqlite' or a PostgreSQL URL on 127.0.0.1: {spec}")
    name = f"hd_bench_out_{uuid.uuid4().hex[:10]}"
    admin_url = url.render_as_string(hide_password=False)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return Database("postgresql", url.set(database=name).render_as_string(False), admin_url)


def bench_settings(database_url: str, instance: Path, relay: str):  # type: ignore[no-untyped-def]
    from helpdesk.settings import Settings

    return Settings.load(
        environ={},
        instance_path=instance,
        dotenv_path=None,
        database_url=database_url,
        secret_key=SECRET,
        mail_domain=MAIL_DOMAIN,
        smtp_relay=relay,
    )


def _agent_text(rng_seed: int) -> str:
    import random

    rng = random.Random(rng_seed)
    words = [
        *("printer", "network", "invoice", "password", "account", "laptop", "screen"),
        *("restart", "update", "access", "settings", "server", "backup", "license", "phone"),
        *("mailbox", "calendar", "vpn", "driver", "please", "again", "then", "check"),
    ]
    lines = ["Hello,", "", "thank you for the details. Here is what to try:", ""]
    size = sum(len(line) + 1 for line in lines)
    while size < REPLY_TEXT_SIZE:
        line = " ".join(rng.choice(words) for _ in range(11)).capitalize() + "."
        lines.append(line)
        size += len(line) + 1
    return "\n".join([*lines, "", "Kind regards"])


def queue_mails(sessions, settings, mails: int, per_ticket: int) -> None:  # type: ignore[no-untyped-def]
    """Queue ``mails`` mails, ``per_ticket`` per ticket: open a ticket with an inbound
    message (acknowledged by the subscriber), then add agent replies; all through the
    ticket lifecycle, as the gateway and the web app do."""
    from helpdesk.accounts import users
    from helpdesk.clock import utcnow
    from helpdesk.tickets import contacts, conversation, queues
    from helpdesk.tickets.actors import Actor
    from helpdesk.tickets.conversation import NewMessage, Opening

    run = uuid.uuid4().hex[:8]
    text = _agent_text(20261126)
    count = math.ceil(mails / per_ticket)
    per_batch = max(1, QUEUE_BATCH // per_ticket)
    done = 0
    for _ in range(math.ceil(count / per_batch)):
        with sessions() as session, session.begin():
            now = utcnow()
            agent = users.add_or_update(
                session, "agent@example.com", role="agent", queue_slugs=list(QUEUES),
                name="Dana Agent", now=now,
            )  # fmt: skip
            by_slug = {slug: queues.by_slug(session, slug) for slug in QUEUES}
            for t in range(done, min(done + per_batch, count)):
                queue = by_slug[QUEUES[t % len(QUEUES)]]
                assert queue is not None
                address = f"customer{t}@customer.example"
                contact = contacts.get_or_create(session, address, f"Customer {t}", now=now)
                subject = f"Request {t}: printer broken again"
                first = NewMessage(
                    from_address=address, from_name=f"Customer {t}", subject=subject,
                    text="My printer is broken again.", to=[queue.email_address], sent_at=now,
                    message_id=f"<bench-{run}-{t}@customer.example>",
                )  # fmt: skip
                ticket = conversation.open_ticket(
                    session, queue=queue, requester=contact, subject=subject,
                    actor=Actor.customer(contact), now=now, opening=Opening(message=first),
                )  # fmt: skip
                for _reply in range(min(per_ticket, mails - t * per_ticket) - 1):
                    _message, row = conversation.reply(
                        session, ticket, actor=agent, text=text, settings=settings, now=now
                    )
                    assert row is not None
            done = min(done + per_batch, count)


def load_outbox(sessions) -> list[tuple[str, list[str], bytes]]:  # type: ignore[no-untyped-def]
    """What the worker will send: (envelope sender, recipients, bytes) of every row, in
    order, built as the worker builds them."""
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload, undefer

    from helpdesk.models import Attachment, Message, OutboxMail
    from helpdesk.outbound.ticket_mail import mime_bytes

    with sessions() as session:
        rows = session.scalars(
            select(OutboxMail)
            .options(
                undefer(OutboxMail.content),
                selectinload(OutboxMail.message)
                .selectinload(Message.attachments)
                .undefer(Attachment.data),
            )
            .order_by(OutboxMail.id)
        )
        return [(row.mail_from, list(row.rcpt_tos), mime_bytes(row)) for row in rows]


def outbox_summary(sessions) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Rows by ``state/attempts``."""
    from sqlalchemy import func, select

    from helpdesk.models import OutboxMail

    with sessions() as session:
        rows = session.execute(
            select(OutboxMail.state, OutboxMail.attempts, func.count()).group_by(
                OutboxMail.state, OutboxMail.attempts
            )
        )
        return {f"{state}/{attempts}": n for state, attempts, n in rows}


# --------------------------------------------------------------------------- the two senders


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Phase:
    name: str
    mails: int = 0
    elapsed: float = 0.0
    cpu: float = 0.0
    rounds: int = 0
    sink: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.mails / self.elapsed if self.elapsed else math.nan


def smtplib_loop(relay_port: int, mails: list[tuple[str, list[str], bytes]]) -> Phase:
    """Send every mail's bytes over one connection, as plainly as smtplib allows."""
    phase = Phase("smtplib")
    cpu = _own_cpu()
    started = time.perf_counter()
    with smtplib.SMTP(HOST, relay_port, local_hostname=MAIL_DOMAIN, timeout=SMTP_TIMEOUT) as smtp:
        for mail_from, rcpt_tos, content in mails:
            refused = smtp.sendmail(mail_from, rcpt_tos, content)
            if refused:
                phase.problems.append(f"refused: {refused}")
            phase.mails += 1
    phase.elapsed = time.perf_counter() - started
    phase.cpu = _own_cpu() - cpu
    return phase


def worker_drain(engine, settings, mails: int, workers: int, profile_to: Path | None) -> Phase:  # type: ignore[no-untyped-def]
    """Run ``OutboxWorker.run_once`` in ``workers`` threads until each finds nothing due."""
    from helpdesk.subscribers import writing_sessions
    from mailgate.outbox_sender import OutboxWorker

    phase = Phase("worker")
    sessions = writing_sessions(engine, settings)
    pool = [OutboxWorker(sessions, settings) for _ in range(workers)]
    max_rounds = math.ceil(mails / pool[0].batch) + EXTRA_ROUNDS
    counts = [0] * workers
    rounds = [0] * workers
    errors: list[str] = []

    def drain(n: int) -> None:
        profiler = None
        if profile_to is not None and n == 0:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0005)
            profiler.start()
        try:
            for _ in range(max_rounds):
                done = pool[n].run_once()
                rounds[n] += 1
                if not done:
                    return
                counts[n] += done
            errors.append(f"worker {n} still busy after {max_rounds} rounds")
        except Exception as exc:  # reported with the figures
            errors.append(f"worker {n}: {exc.__class__.__name__}: {exc}")
        finally:
            if profiler is not None and profile_to is not None:
                profiler.stop()
                text = profiler.output_text(unicode=False, color=False)
                Path(f"{profile_to}.txt").write_text(text)
                Path(f"{profile_to}.html").write_text(profiler.output_html())
                print(text)

    cpu = _own_cpu()
    started = time.perf_counter()
    threads = [
        threading.Thread(target=drain, args=(n,), name=f"worker-{n}", daemon=True)
        for n in range(workers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(3600)
        if thread.is_alive():
            errors.append(f"{thread.name} did not finish within an hour")
    phase.elapsed = time.perf_counter() - started
    phase.cpu = _own_cpu() - cpu
    phase.mails = sum(counts)
    phase.rounds = sum(rounds)
    phase.problems.extend(errors)
    return phase


# --------------------------------------------------------------------------- main


def run_database(spec: str, args: argparse.Namespace, sink: Sink, workdir: Path) -> bool:
    from helpdesk import bootstrap, db
    from helpdesk.clock import utcnow
    from helpdesk.outbound.acknowledgement import Acknowledgements
    from helpdesk.tickets.dispatch import Dispatcher, attach
    from helpdesk.tickets.events import TicketCreated

    database = create_database(spec, workdir)
    ok = True
    try:
        settings = bench_settings(
            database.url, workdir / f"instance-{database.label}", sink.address
        )
        engine = db.make_engine(settings, pool_size=max(5, args.workers + 2))
        try:
            db.upgrade(engine)
            only_acknowledgements = Dispatcher()
            only_acknowledgements.subscribe(Acknowledgements(settings), TicketCreated)
            sessions = attach(db.session_factory(engine, write=True), only_acknowledgements)
            with sessions() as session, session.begin():
                bootstrap.seed(session, settings, now=utcnow())
            started = time.perf_counter()
            queue_mails(sessions, settings, args.mails, args.mails_per_ticket)
            queued_in = time.perf_counter() - started
            mails = load_outbox(db.session_factory(engine))
            octets = sum(len(content) for _, _, content in mails)
            print(
                f"[{database.label}] queued {len(mails)} mails through the services in "
                f"{queued_in:.1f} s: {octets / 1e6:.1f} MB, mean {octets / len(mails):,.0f} "
                f"bytes, min {min(len(c) for *_, c in mails):,}, "
                f"max {max(len(c) for *_, c in mails):,}",
                flush=True,
            )

            sink.ask("reset")
            plain = smtplib_loop(sink.port, mails)
            plain.sink = sink.ask("count")

            sink.ask("reset")
            profile_to = (
                OUT_DIR / f"outbound-{database.label}.pyinstrument" if args.profile else None
            )
            worker = worker_drain(engine, settings, args.mails, args.workers, profile_to)
            worker.sink = sink.ask("count")
            states = outbox_summary(db.session_factory(engine))
        finally:
            engine.dispose()
    finally:
        database.drop()

    for phase in (plain, worker):
        if phase.mails != args.mails:
            phase.problems.append(f"sent {phase.mails} mails, expected {args.mails}")
        if phase.sink.get("count") != args.mails:
            phase.problems.append(f"the sink received {phase.sink.get('count')}, not {args.mails}")
        if phase.sink.get("distinct_message_ids") != args.mails:
            phase.problems.append(
                f"the sink saw {phase.sink.get('distinct_message_ids')} distinct Message-IDs"
            )
    if plain.sink.get("octets") != worker.sink.get("octets"):
        worker.problems.append(
            f"the sink got {worker.sink.get('octets')} bytes from the worker, "
            f"{plain.sink.get('octets')} from smtplib"
        )
    if states != {"sent/1": args.mails}:
        worker.problems.append(f"outbox rows by state/attempts: {states}")

    label = f"{database.label}, {args.workers} worker{'s' if args.workers > 1 else ''}"
    print(f"[{label}] {args.mails} mails to the sink on {sink.address}")
    print(f"  {'':10} {'mails/s':>9} {'seconds':>8} {'cpu s/1k':>9}  sink received")
    for phase in (plain, worker):
        cpu_per_k = phase.cpu / phase.mails * 1000 if phase.mails else math.nan
        print(
            f"  {phase.name:10} {phase.rate:9,.0f} {phase.elapsed:8.2f} {cpu_per_k:9.3f}  "
            f"{phase.sink.get('count')} ({phase.sink.get('distinct_message_ids')} distinct)"
        )
    print(
        f"  worker/smtplib: {worker.rate / plain.rate:.3f} "
        f"({worker.rounds} worker rounds; outbox rows by state/attempts: {states})"
    )
    for phase in (plain, worker):
        for problem in phase.problems:
            ok = False
            print(f"  PROBLEM ({phase.name}): {problem}")
    print("  verified: OK" if ok else "  verified: FAILED", flush=True)
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--mails", type=int, default=10_000, help="how many (default 10,000)")
    parser.add_argument(
        "--database-url",
        action="append",
        help="'sqlite' (default) or a PostgreSQL server URL on 127.0.0.1; repeatable",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="worker threads (more than one: PostgreSQL only)"
    )
    parser.add_argument(
        "--mails-per-ticket",
        type=int,
        default=3,
        help="the acknowledgement and agent replies per ticket (default 3)",
    )
    parser.add_argument("--profile", action="store_true", help="pyinstrument the worker phase")
    parser.add_argument("--serve-sink", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_sink:
        return serve_sink()
    if min(args.mails, args.workers, args.mails_per_ticket) < 1:
        parser.error("--mails, --workers and --mails-per-ticket must be at least 1")
    specs = args.database_url or ["sqlite"]
    if args.workers > 1 and "sqlite" in specs:
        parser.error("--workers above 1 needs PostgreSQL (one claimer on SQLite)")

    sink = Sink()
    ok = True
    try:
        with tempfile.TemporaryDirectory(prefix="hd-bench-outbound-") as tmp:
            for spec in specs:
                ok = run_database(spec, args, sink, Path(tmp)) and ok
    finally:
        with contextlib.suppress(Exception):
            print(f"sink process CPU: {sink.stop():.1f} s")
        sink.kill()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
