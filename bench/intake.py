"""Intake benchmark: SMTP throughput and latency of the gateway against a do-nothing sink.

What it measures
----------------
N messages (``--messages``, default 10,000) of about 5 KB, every tenth one
carrying a 100 KB attachment (about 137 KB base64), each with a unique
Message-ID and, by default, a unique sender (so every message opens a ticket,
creates a contact and queues an acknowledgement: the heaviest common path;
``--senders K`` cycles through K senders instead), addressed in turn to the
three seeded queues, are sent over C concurrent SMTP connections
(``--connections``, default 8) to

* ``sink``: an aiosmtpd ``Controller`` whose ``handle_DATA`` returns ``250 OK``
  and does nothing else: the cost of aiosmtpd's protocol alone;
* ``gateway``: ``mailgate.server.start_gateway`` on a fresh database that is
  migrated (``helpdesk.db.upgrade``) and seeded (``helpdesk.queues.seed``)
  before the clock starts; durable commits as ``helpdesk.db.make_engine``
  configures them (SQLite: WAL + ``synchronous=FULL``). The default database
  is a new SQLite file in a temp dir; ``--database-url`` runs against another
  one (see below).

Both targets run in the same invocation, one after the other, and the summary
prints for each: msgs/s, p50 and p99 latency (ms), peak RSS of the server
process, server and client CPU seconds per 1,000 messages, and the ratio
gateway/sink of msgs/s. CPU per message is the steadier figure when other work
shares the machine; msgs/s and latency move with it. At the end the
gateway's database is counted: it must hold exactly N raw mails and N tickets
(the exit status is 1 otherwise, or when any message was refused). Figures
also go to ``bench/out/intake-<time>.json``.

Method
------
Each server runs in its own subprocess (this file, re-executed with
``--serve``); the client load runs in the main process. On a 2-core machine
that keeps the client and the server from sharing one GIL: the server's
threads (event loop, committer) compete only with each other, as in
production, the client's Python work never shows up as server latency, and
the server's peak RSS (``VmHWM``) and CPU time (``/proc/<pid>/stat``) are its
own. The sink and the gateway run one after the other, never at once. The gateway
child configures logging exactly as ``helpdesk.cli.main`` does (INFO, one line
per accepted message), written to ``bench/out/<target>.log``.

The client is a minimal asyncio SMTP client on one thread (no GIL contention
between client connections, no smtplib overhead): C connections are opened
and greeted with EHLO, then released together; each sends messages in
sequence (MAIL FROM, RCPT TO, DATA, body), taking the next index from a shared
counter until N are sent. Latency is measured as faithfully as a client can:
the body is written with the transport's write buffer limit at zero and
``drain()`` awaited, so every byte but the terminating ``.<CRLF>`` has been
handed to the kernel; the clock starts just before ``.<CRLF>`` is written and
stops when the complete reply line has been read. That is the span RFC 5321
calls the end-of-data wait, i.e. the time during which the gateway commits.
Throughput is N divided by the wall time from releasing the connections to
the last reply. Messages are built on the fly from pre-built parts (a few
microseconds each), so the client's footprint stays small.

PostgreSQL: ``--database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres``
names a server and a maintenance database to connect to; the benchmark
creates its own scratch database ``hd_bench_<random>`` there, runs on it and
drops it afterwards. Give ``--database-url`` more than once to run several
gateway targets in one invocation; ``sqlite`` means a fresh temp SQLite file
(the default).

Profiling: ``--profile`` attaches ``py-spy record`` (100 Hz, all threads,
idle samples included unless ``--py-spy-mode cpu``; ``gil`` samples only the
thread holding the GIL) to the gateway child and writes the raw collapsed
stacks to ``bench/out/gateway-<db>.pyspy.txt`` (loadable in speedscope.app)
plus a per-thread summary to ``bench/out/gateway-<db>.profile.txt``, which is
also printed: time by step (commit, autoflush, flush, queries, outgoing MIME,
parsing, ...: the first of ``STEPS`` found in the sampled stack), by layer
(the innermost frame's library), and the top functions by self and inclusive
time.
``--profiler pyinstrument`` instead runs pyinstrument inside the gateway
child's two busy threads (event loop and committer) and writes one HTML and
one text report per thread. Profiled runs are slower; take figures from runs
without ``--profile``.

How to run (from the repository root)::

    .venv/bin/python bench/intake.py --messages 2000          # quick iteration
    .venv/bin/python bench/intake.py                          # 10,000 messages, 8 connections
    .venv/bin/python bench/intake.py --profile                # py-spy profile of the gateway
    .venv/bin/python bench/intake.py --database-url sqlite \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres

Experiments: ``--targets sink`` or ``--targets gateway`` runs one of them;
``--gateways K`` starts K gateway processes on the same database and spreads
the connections over them (scale-out); ``--switch-interval S`` sets
``sys.setswitchinterval`` in the gateway process (GIL hand-off between the
event loop and the committer thread). Every wait is bounded: a server child
must start within 60 s, each SMTP transaction finish within 120 s.

py-spy needs ptrace permission on the child (root, or
``kernel.yama.ptrace_scope=0``). Other load on the machine distorts the
figures: run twice and compare.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"
HOST = "127.0.0.1"
MAIL_DOMAIN = "example.com"
SECRET = "bench-secret-key-not-for-production"
QUEUE_ADDRESSES = (
    b"help-desk@example.com",
    b"service-desk@example.com",
    b"tech-support@example.com",
)
MESSAGE_SIZE = 5 * 1024
ATTACHMENT_SIZE = 100 * 1024
ATTACHMENT_EVERY = 10
READY_TIMEOUT = 60.0  # seconds for a server child to start listening
REPLY_TIMEOUT = 120.0  # seconds for one whole SMTP transaction
STOP_TIMEOUT = 60.0  # seconds for a server child to stop and report
MAX_REPLY_LINES = 64


# --------------------------------------------------------------------------- messages


class MessageFactory:
    """Builds message ``i`` from pre-built parts: headers, ~5 KB text, 100 KB attachment."""

    def __init__(self, run_id: str, senders: int) -> None:
        self.run_id = run_id
        self.senders = senders
        rng = random.Random(20261126)
        words = [
            *("printer", "network", "invoice", "password", "account", "laptop", "screen"),
            *("error", "update", "access", "email", "server", "backup", "license", "phone"),
            *("mailbox", "calendar", "vpn", "ticket", "please", "again", "since", "urgent"),
            *("yesterday", "morning", "cannot", "still", "broken"),
        ]
        lines = []
        size = 0
        while size < MESSAGE_SIZE - 620:
            line = " ".join(rng.choice(words) for _ in range(11)).capitalize() + "."
            lines.append(line)
            size += len(line) + 2
        self.text = ("\r\n".join(lines) + "\r\n").encode()
        blob = rng.randbytes(ATTACHMENT_SIZE)
        self.attachment = base64.encodebytes(blob).replace(b"\n", b"\r\n")
        # The templates are fixed and the variable parts are digits, so no line
        # starts with a dot and no dot-stuffing is needed; make sure of it.
        assert b"\r\n." not in self.text and b"\r\n." not in self.attachment

    def build(self, i: int) -> tuple[bytes, bytes, bytes]:
        """(MAIL FROM address, RCPT TO address, message bytes ending in CRLF)."""
        sender_no = i if self.senders <= 0 else i % self.senders
        sender = b"customer%d@customer.example" % sender_no
        rcpt = QUEUE_ADDRESSES[i % len(QUEUE_ADDRESSES)]
        headers = (
            b"Received: from mx%d.customer.example (mx%d.customer.example [192.0.2.%d])\r\n"
            b"\tby mail.example.com with ESMTP; Thu, 26 Nov 2026 09:00:00 +0100\r\n"
            b"From: Customer %d <%s>\r\n"
            b"To: %s\r\n"
            b"Subject: =?utf-8?q?Request_%d=3A_Drucker_kaputt_=C3=BCberall?=\r\n"
            b"Message-ID: <bench-%s-%d@customer.example>\r\n"
            b"Date: Thu, 26 Nov 2026 09:00:00 +0100\r\n"
            b"MIME-Version: 1.0\r\n"
            % (i % 7, i % 7, i % 250, sender_no, sender, rcpt, i, self.run_id.encode(), i)
        )
        intro = b"Hello support,\r\n\r\nthis is request number %d.\r\n\r\n" % i
        if i % ATTACHMENT_EVERY != ATTACHMENT_EVERY - 1:
            data = (
                headers
                + b"Content-Type: text/plain; charset=utf-8\r\n"
                + b"Content-Transfer-Encoding: 7bit\r\n\r\n"
                + intro
                + self.text
            )
            return sender, rcpt, data
        boundary = b"=_bench_%d" % i
        data = (
            headers
            + b'Content-Type: multipart/mixed; boundary="%s"\r\n\r\n' % boundary
            + b"--%s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" % boundary
            + intro
            + self.text
            + b"--%s\r\nContent-Type: application/pdf\r\n" % boundary
            + b"Content-Transfer-Encoding: base64\r\n"
            + b'Content-Disposition: attachment; filename="report-%d.pdf"\r\n\r\n' % i
            + self.attachment
            + b"--%s--\r\n" % boundary
        )
        return sender, rcpt, data


# --------------------------------------------------------------------------- client


class SMTPError(Exception):
    pass


@dataclass
class LoadResult:
    sent: int = 0
    accepted: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    client_cpu: float = 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


async def _reply(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    lines = []
    for _ in range(MAX_REPLY_LINES):
        line = await reader.readline()
        if not line:
            raise SMTPError("server closed the connection")
        lines.append(line)
        if len(line) < 4 or line[3:4] != b"-":
            return int(line[:3]), b"".join(lines)
    raise SMTPError(f"reply longer than {MAX_REPLY_LINES} lines")


async def _command(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes, expect: int
) -> None:
    writer.write(line)
    code, text = await _reply(reader)
    if code != expect:
        raise SMTPError(text.decode(errors="replace").strip())


async def _connection(
    port: int,
    factory: MessageFactory,
    indices,  # an iterator shared by all connections (single thread: no lock needed)
    result: LoadResult,
    greeted: asyncio.Event,
    counter: list[int],
    go: asyncio.Event,
) -> None:
    reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 20)
    # Zero high-water mark: drain() returns only when every byte is in the kernel.
    writer.transport.set_write_buffer_limits(high=0)
    try:
        async with asyncio.timeout(REPLY_TIMEOUT):
            code, text = await _reply(reader)
            if code != 220:
                raise SMTPError(text.decode(errors="replace").strip())
            await _command(reader, writer, b"EHLO bench-client.customer.example\r\n", 250)
        counter[0] -= 1
        if counter[0] == 0:
            greeted.set()
        await go.wait()
        for i in indices:
            sender, rcpt, data = factory.build(i)
            result.sent += 1
            async with asyncio.timeout(REPLY_TIMEOUT):
                try:
                    await _command(reader, writer, b"MAIL FROM:<%s>\r\n" % sender, 250)
                    await _command(reader, writer, b"RCPT TO:<%s>\r\n" % rcpt, 250)
                    await _command(reader, writer, b"DATA\r\n", 354)
                except SMTPError as exc:
                    result.refused[str(exc)[:80]] += 1
                    await _command(reader, writer, b"RSET\r\n", 250)
                    continue
                writer.write(data)
                await writer.drain()
                started = time.perf_counter()
                writer.write(b".\r\n")
                code, text = await _reply(reader)
                latency = time.perf_counter() - started
            if code == 250:
                result.accepted += 1
                result.latencies.append(latency)
            else:
                result.refused[text.decode(errors="replace").strip()[:80]] += 1
        with contextlib.suppress(Exception):
            async with asyncio.timeout(10):
                await _command(reader, writer, b"QUIT\r\n", 221)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(10):
                await writer.wait_closed()


async def _load(
    ports: list[int], factory: MessageFactory, messages: int, connections: int
) -> LoadResult:
    """Send ``messages`` over ``connections``, spread round-robin over ``ports``."""
    result = LoadResult()
    indices = iter(range(messages))
    greeted, go = asyncio.Event(), asyncio.Event()
    counter = [connections]
    tasks = [
        asyncio.create_task(
            _connection(ports[n % len(ports)], factory, indices, result, greeted, counter, go)
        )
        for n in range(connections)
    ]
    waiter = asyncio.create_task(greeted.wait())
    done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    if waiter not in done:  # a connection failed before everyone was greeted
        waiter.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()
        raise SMTPError("a connection ended before the start")
    cpu_before = _own_cpu()
    started = time.perf_counter()
    go.set()
    await asyncio.gather(*tasks)
    result.elapsed = time.perf_counter() - started
    result.client_cpu = _own_cpu() - cpu_before
    return result


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------- server children


class SinkHandler:
    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _bench_settings(database_url: str, instance: Path):  # type: ignore[no-untyped-def]
    from helpdesk.settings import Settings

    return Settings.load(
        environ={},
        instance_path=instance,
        dotenv_path=None,
        database_url=database_url,
        secret_key=SECRET,
        mail_domain=MAIL_DOMAIN,
    )


def _install_pyinstrument() -> list:  # type: ignore[type-arg]
    """Run pyinstrument inside the committer thread and the event-loop thread."""
    from aiosmtpd.controller import Controller
    from pyinstrument import Profiler

    from mailgate.committer import IntakeCommitter

    reports: list = []  # type: ignore[type-arg]

    def wrap(original, name):  # type: ignore[no-untyped-def]
        def run(self, *args):  # type: ignore[no-untyped-def]
            profiler = Profiler(interval=0.001, async_mode="disabled")
            profiler.start()
            try:
                return original(self, *args)
            finally:
                profiler.stop()
                reports.append((name, profiler))

        return run

    IntakeCommitter._run = wrap(IntakeCommitter._run, "committer")  # type: ignore[method-assign]
    Controller._run = wrap(Controller._run, "event-loop")  # type: ignore[method-assign]
    return reports


def serve(
    kind: str, database_url: str, instance: str, profiler: str, switch_interval: float
) -> int:
    """Child process: run one server until a line (or EOF) arrives on stdin."""
    import logging

    from aiosmtpd.controller import Controller

    if switch_interval > 0:
        sys.setswitchinterval(switch_interval)
    reports: list = []  # type: ignore[type-arg]
    if profiler == "pyinstrument":
        reports = _install_pyinstrument()
    port = _free_port()
    stats: dict[str, object] = {}
    if kind == "sink":
        server = Controller(SinkHandler(), hostname=HOST, port=port, ready_timeout=READY_TIMEOUT)
        server.start()
    else:
        from mailgate.server import start_gateway

        # As helpdesk.cli.main configures it for `helpdesk mailgate`.
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        for noisy in ("mail.log", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        server = start_gateway(_bench_settings(database_url, Path(instance)), HOST, port)
    print(json.dumps({"port": port, "pid": os.getpid()}), flush=True)
    sys.stdin.readline()
    server.stop()
    if kind != "sink":
        committer = server.handler.committer
        stats = {"batches": committer.batches, "committed": committer.messages}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    stats.update(maxrss_kib=usage.ru_maxrss, cpu=usage.ru_utime + usage.ru_stime)
    for thread_name, prof in reports:
        base = f"{Path(instance).name}.pyinstrument-{thread_name}"
        (OUT_DIR / f"{base}.html").write_text(prof.output_html())
        (OUT_DIR / f"{base}.txt").write_text(prof.output_text(unicode=False, color=False))
    print(json.dumps(stats), flush=True)
    return 0


@dataclass
class Child:
    """A server child process, driven through stdin/stdout lines of JSON."""

    name: str
    proc: subprocess.Popen[str]
    port: int
    pid: int
    log: Path

    @classmethod
    def start(
        cls,
        name: str,
        kind: str,
        database_url: str,
        instance: Path,
        profiler: str = "none",
        switch_interval: float = 0.0,
    ) -> Child:
        log = OUT_DIR / f"{name}.log"
        instance.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--serve",
            kind,
            "--serve-database",
            database_url,
            "--serve-instance",
            str(instance),
            "--serve-profiler",
            profiler,
            "--serve-switch-interval",
            str(switch_interval),
        ]
        with log.open("w") as err:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True
            )
        hello = _read_json_line(proc, READY_TIMEOUT, f"{name} did not start (see {log})")
        return cls(name, proc, hello["port"], hello["pid"], log)

    def cpu_seconds(self) -> float:
        """utime + stime of the child so far (Linux /proc; NaN elsewhere)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return math.nan
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_kib(self) -> int | None:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return None

    def stop(self) -> dict:  # type: ignore[type-arg]
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.write("stop\n")
            self.proc.stdin.flush()
        try:
            stats = _read_json_line(self.proc, STOP_TIMEOUT, f"{self.name} did not stop cleanly")
        finally:
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return stats


def _read_json_line(proc: subprocess.Popen[str], timeout: float, error: str) -> dict:  # type: ignore[type-arg]
    assert proc.stdout is not None
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    if not box or not box[0].strip():
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        raise RuntimeError(error)
    return json.loads(box[0])


# --------------------------------------------------------------------------- databases


@dataclass
class Database:
    label: str
    url: str
    cleanup: list = field(default_factory=list)  # type: ignore[type-arg]


def prepare_database(spec: str, workdir: Path) -> Database:
    """A fresh, migrated and seeded database for ``spec`` (``sqlite`` or a server URL)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from helpdesk import db
    from helpdesk.clock import utcnow
    from helpdesk.tickets import queues

    if spec == "sqlite":
        database = Database("sqlite", f"sqlite:///{workdir / 'helpdesk.db'}")
    else:
        url = make_url(db.normalise_url(spec))
        if url.get_backend_name() != "postgresql":
            raise SystemExit(f"--database-url: use 'sqlite' or a PostgreSQL URL, not {spec}")
        name = f"hd_bench_{uuid.uuid4().hex[:10]}"
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))

        def drop() -> None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

        database = Database(
            "postgresql", url.set(database=name).render_as_string(hide_password=False), [drop]
        )
    settings = _bench_settings(database.url, workdir / "instance")
    engine = db.make_engine(settings)
    try:
        db.upgrade(engine)
        with db.session_factory(engine, write=True)() as session, session.begin():
            queues.seed(session, mail_domain=MAIL_DOMAIN, now=utcnow())
    finally:
        engine.dispose()
    return database


def count_rows(database: Database, workdir: Path) -> dict[str, int]:
    from sqlalchemy import func, select

    from helpdesk import db
    from helpdesk.models import Contact, Message, OutboxMail, RawMail, Ticket

    engine = db.make_engine(_bench_settings(database.url, workdir / "instance"))
    try:
        with db.session_factory(engine)() as session:
            return {
                model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
                for model in (RawMail, Ticket, Message, Contact, OutboxMail)
            }
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- profiling


def start_py_spy(pid: int, out: Path, mode: str) -> subprocess.Popen[bytes]:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        raise SystemExit("py-spy not found: .venv/bin/pip install py-spy")
    # Blocking mode (the default): py-spy pauses the process per sample, which
    # costs a little speed but gives whole stacks (--nonblocking tears ~10%).
    cmd = [exe, "record", "--pid", str(pid), "--rate", "100", "--format", "raw"]
    cmd += ["--threads", "--output", str(out)]
    cmd += {"idle": ["--idle"], "gil": ["--gil"], "cpu": []}[mode]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.5)  # let it attach before the load starts
    if proc.poll() is not None:
        raise SystemExit(f"py-spy failed: {proc.stderr.read().decode(errors='replace')}")  # type: ignore[union-attr]
    return proc


def stop_py_spy(proc: subprocess.Popen[bytes]) -> None:
    """py-spy ends by itself when the target exits; nudge it with SIGINT otherwise."""
    for sig in (None, signal.SIGINT, signal.SIGKILL):
        if sig is not None:
            proc.send_signal(sig)
        try:
            proc.wait(30)
            return
        except subprocess.TimeoutExpired:
            continue


# py-spy's raw format: "thread (0x..);outer (file:line);...;inner (file:line) COUNT".
# A frame is matched by function name (suffix of the qualified name) and a
# piece of its file path.
Rule = tuple[str, tuple[str, ...], tuple[str, ...]]

# "By step": the first rule (in this priority order) whose frame appears
# anywhere in the stack; it answers "which piece of work is this time for".
STEPS: tuple[Rule, ...] = (
    ("commit (COMMIT, WAL fsync)", ("do_commit",), ()),
    ("ORM autoflush before a query", ("_autoflush",), ("sqlalchemy/orm/",)),
    ("ORM flush (unit of work, INSERTs)", ("flush", "_flush"), ("sqlalchemy/orm/session.py",)),
    (
        "SQL statements (SELECT, UPDATE..RETURNING)",
        ("execute", "scalars", "scalar"),
        ("sqlalchemy/",),
    ),
    ("savepoint begin/release", ("begin_nested", "__exit__"), ("sqlalchemy/",)),
    ("outgoing MIME build + serialise", ("build",), ("helpdesk/mail/compose.py",)),
    ("outgoing MIME build + serialise", ("as_bytes",), ("email/message.py",)),
    ("template render (jinja2)", ("render",), ("helpdesk/mail/compose.py",)),
    ("parse inbound message", ("parse",), ("helpdesk/mail/parse.py",)),
    ("classify + threading", ("classify", "find_ticket"), ("helpdesk/",)),
    ("building SQL expressions (select(), where())", ("",), ("sqlalchemy/sql/",)),
    ("ORM objects + attribute events", ("",), ("sqlalchemy/orm/",)),
    ("other SQLAlchemy", ("",), ("sqlalchemy/",)),
    ("template lookup (resource_dir stat)", ("resource_dir",), ("helpdesk/db.py",)),
    ("aiosmtpd protocol (lines, commands)", ("",), ("aiosmtpd/",)),
    ("asyncio loop + streams", ("",), ("asyncio/",)),
    ("logging", ("",), ("logging/",)),
)
# "By layer": the innermost frame's library; time in C (sqlite3, psycopg,
# hashlib, epoll) is charged to the Python frame that called it.
LAYERS: tuple[Rule, ...] = (
    ("DB driver (sqlite3/psycopg C: execute)", ("do_execute", "do_executemany"), ()),
    ("DB driver (sqlite3/psycopg C: commit+fsync)", ("do_commit",), ()),
    ("SQLAlchemy (Python)", ("",), ("sqlalchemy/",)),
    ("stdlib email", ("",), ("/email/",)),
    ("jinja2", ("",), ("jinja2/",)),
    ("aiosmtpd", ("",), ("aiosmtpd/",)),
    ("asyncio", ("",), ("asyncio/",)),
    ("helpdesk + mailgate", ("",), ("helpdesk/", "mailgate/")),
)
IDLE: tuple[Rule, ...] = (
    (
        "idle",
        ("select", "wait", "get", "readline", "_worker"),
        ("selectors.py", "threading.py", "queue.py", "concurrent/futures/thread.py"),
    ),
    ("idle", ("_run",), ("mailgate/committer.py",)),  # blocked in SimpleQueue.get (C)
    ("idle", ("serve",), ("intake.py",)),  # the child's main thread waiting on stdin
)


def _matches(frame: str, rule: Rule) -> bool:
    _label, names, paths = rule
    name, _, where = frame.partition(" (")
    if not any(name == n or name.endswith("." + n) or not n for n in names):
        return False
    return not paths or any(p in where for p in paths)


def _classify(frames: list[str]) -> tuple[str, str]:
    """(step, layer) of one sampled stack, innermost frame last."""
    leaf = frames[-1] if frames else ""
    if not leaf or any(_matches(leaf, rule) for rule in IDLE):
        return "idle (waiting for work or I/O)", "idle"
    step = next(
        (rule[0] for rule in STEPS if any(_matches(f, rule) for f in frames)), "other Python"
    )
    layer = next((rule[0] for rule in LAYERS if _matches(leaf, rule)), "other (stdlib etc.)")
    return step, layer


def _short(frame: str) -> str:
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "python3.11/", "/work/main/", "/tmp/hd-exp/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where.rsplit(':', 1)[0]})"


def summarise_py_spy(raw: Path, top: int = 15) -> str:
    """Per busy thread: time by step, by layer, top functions by self and inclusive time."""
    threads: dict[str, Counter[str]] = defaultdict(Counter)
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        threads[frames[0]][";".join(frames[1:])] += int(count)
    out = []
    for thread, stacks in sorted(threads.items(), key=lambda kv: -sum(kv[1].values())):
        total = sum(stacks.values())
        steps: Counter[str] = Counter()
        layers: Counter[str] = Counter()
        selfs: Counter[str] = Counter()
        incl: Counter[str] = Counter()
        for stack, n in stacks.items():
            frames = [f for f in stack.split(";") if f]
            if not frames:
                continue
            step, layer = _classify(frames)
            steps[step] += n
            layers[layer] += n
            if layer == "idle":
                continue
            selfs[_short(frames[-1])] += n
            for frame in set(map(_short, frames)):
                incl[frame] += n
        busy = total - layers["idle"]
        out.append(f"== {thread}: {total} samples, busy {busy / total:.0%}")
        if busy < 0.02 * total or busy < 20:
            continue
        out.append("  by step (share of all samples):")
        out += [f"    {n / total:6.1%}  {name}" for name, n in steps.most_common()]
        out.append("  by layer (innermost frame):")
        out += [f"    {n / total:6.1%}  {name}" for name, n in layers.most_common()]
        out.append(f"  top {top} functions by self time:")
        out += [f"    {n / total:6.1%}  {name}" for name, n in selfs.most_common(top)]
        out.append(f"  top {top} functions by inclusive time (excluding thread plumbing):")
        plumbing = ("Thread.", "_bootstrap", "run_forever", "_run_once", "Handle._run")
        shown = [(k, n) for k, n in incl.most_common() if not k.startswith(plumbing)]
        out += [f"    {n / total:6.1%}  {name}" for name, n in shown[:top]]
    return "\n".join(out)


# --------------------------------------------------------------------------- driver


@dataclass
class TargetResult:
    name: str
    load: LoadResult
    peak_rss_kib: int | None
    server_cpu: float
    stats: dict  # type: ignore[type-arg]
    rows: dict[str, int] | None = None

    @property
    def rate(self) -> float:
        return self.load.accepted / self.load.elapsed if self.load.elapsed else 0.0


def run_target(
    name: str,
    kind: str,
    database: Database | None,
    workdir: Path,
    args: argparse.Namespace,
    factory: MessageFactory,
) -> TargetResult:
    profiler = args.profiler if (args.profile and kind == "gateway") else "none"
    count = args.gateways if kind == "gateway" else 1
    url = database.url if database else ""
    children: list[Child] = []
    spy = None
    try:
        for k in range(count):
            label = name if count == 1 else f"{name}-{k}"
            # Only the first process is profiled.
            children.append(
                Child.start(
                    label, kind, url, workdir / label, profiler if k == 0 else "none",
                    args.switch_interval if kind == "gateway" else 0.0,
                )
            )  # fmt: skip
        if profiler == "py-spy":
            spy = start_py_spy(children[0].pid, OUT_DIR / f"{name}.pyspy.txt", args.py_spy_mode)
        cpu_before = sum(child.cpu_seconds() for child in children)
        print(
            f"{name}: sending {args.messages} messages over {args.connections} connections"
            + (f" to {count} processes" if count > 1 else "")
            + " ..."
        )
        ports = [child.port for child in children]
        load = asyncio.run(_load(ports, factory, args.messages, args.connections))
        server_cpu = sum(child.cpu_seconds() for child in children) - cpu_before
        peaks = [child.peak_rss_kib() for child in children]
    finally:
        stats_list = [child.stop() for child in children]
        if spy is not None:
            stop_py_spy(spy)
    stats: dict[str, float] = {}
    for one in stats_list:
        for key, value in one.items():
            stats[key] = stats.get(key, 0) + value
    peak = sum(p or 0 for p in peaks) or stats.get("maxrss_kib")
    result = TargetResult(name, load, int(peak) if peak else None, server_cpu, stats)
    if spy is not None:
        raw = OUT_DIR / f"{name}.pyspy.txt"
        if raw.exists():
            summary = summarise_py_spy(raw)
            (OUT_DIR / f"{name}.profile.txt").write_text(summary + "\n")
            print(f"\n--- py-spy profile of {name} ({args.py_spy_mode}), raw stacks in {raw}")
            print(summary)
    return result


def _fmt(value: float, spec: str) -> str:
    return (
        "n/a"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else format(value, spec)
    )


def report(results: list[TargetResult], args: argparse.Namespace) -> bool:
    ok = True
    print()
    print(
        f"{args.messages} messages (~5 KB, 1 in {ATTACHMENT_EVERY} with a 100 KB attachment), "
        f"{args.connections} connections, {os.cpu_count()} CPUs"
    )
    header = (
        f"{'target':<20} {'msgs/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        f"{'peak RSS MiB':>12} {'srv CPU s/1k':>12} {'cli CPU s/1k':>12} {'refused':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        per_k = 1000 / max(1, r.load.accepted)
        rss = r.peak_rss_kib / 1024 if r.peak_rss_kib else math.nan
        refused = sum(r.load.refused.values())
        print(
            f"{r.name:<20} {r.rate:>8.0f} {r.load.percentile(0.5) * 1000:>8.1f} "
            f"{r.load.percentile(0.99) * 1000:>8.1f} {r.load.percentile(1.0) * 1000:>8.1f} "
            f"{_fmt(rss, '>12.1f')} {_fmt(r.server_cpu * per_k, '>12.2f')} "
            f"{r.load.client_cpu * per_k:>12.2f} {refused:>8}"
        )
        if refused:
            ok = False
            for text, n in r.load.refused.most_common(5):
                print(f"    refused {n}x: {text}")
    sink = next((r for r in results if r.name == "sink"), None)
    for r in results:
        if r is sink:
            continue
        if sink and sink.rate:
            print(f"ratio {r.name}/sink msgs/s: {r.rate / sink.rate:.2f}")
        if r.stats.get("batches"):
            print(
                f"{r.name}: {r.stats['batches']} commits, "
                f"{r.stats['committed'] / r.stats['batches']:.1f} messages per commit on average"
            )
        if r.rows is not None:
            raw, tickets = r.rows["raw_mails"], r.rows["tickets"]
            good = raw == tickets == args.messages
            ok &= good
            print(
                f"{r.name} database: {raw} raw mails, {tickets} tickets "
                f"(expected {args.messages} each: {'OK' if good else 'MISMATCH'}); "
                + ", ".join(
                    f"{k} {v}" for k, v in r.rows.items() if k not in ("raw_mails", "tickets")
                )
            )
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000, help="messages per target")
    parser.add_argument("--connections", type=int, default=8, help="concurrent SMTP connections")
    parser.add_argument(
        "--database-url",
        action="append",
        default=None,
        help="'sqlite' (fresh temp file, the default) or a PostgreSQL server URL; repeatable",
    )
    parser.add_argument(
        "--senders", type=int, default=0, help="distinct senders (0: one per message)"
    )
    parser.add_argument(
        "--targets",
        default="sink,gateway",
        help="comma-separated subset of sink,gateway to run (default: both)",
    )
    parser.add_argument(
        "--gateways",
        type=int,
        default=1,
        help="gateway processes on the same database (experiment: scale-out); "
        "connections are spread round-robin over them",
    )
    parser.add_argument(
        "--switch-interval",
        type=float,
        default=0.0,
        help="sys.setswitchinterval() in the gateway process (experiment; 0: Python's default)",
    )
    parser.add_argument("--profile", action="store_true", help="profile the gateway")
    parser.add_argument("--profiler", choices=("py-spy", "pyinstrument"), default="py-spy")
    parser.add_argument("--py-spy-mode", choices=("idle", "cpu", "gil"), default="idle")
    parser.add_argument("--serve", choices=("sink", "gateway"), help=argparse.SUPPRESS)
    parser.add_argument("--serve-database", default="", help=argparse.SUPPRESS)
    parser.add_argument("--serve-instance", default="", help=argparse.SUPPRESS)
    parser.add_argument("--serve-profiler", default="none", help=argparse.SUPPRESS)
    parser.add_argument("--serve-switch-interval", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve(
            args.serve,
            args.serve_database,
            args.serve_instance,
            args.serve_profiler,
            args.serve_switch_interval,
        )
    if args.messages < 1 or args.connections < 1 or args.gateways < 1:
        parser.error("--messages, --connections and --gateways must be positive")

    targets = {t.strip() for t in args.targets.split(",") if t.strip()}
    if not targets or targets - {"sink", "gateway"}:
        parser.error("--targets takes sink, gateway or both")
    OUT_DIR.mkdir(exist_ok=True)
    factory = MessageFactory(uuid.uuid4().hex[:8], args.senders)
    results: list[TargetResult] = []
    databases: list[Database] = []
    with tempfile.TemporaryDirectory(prefix="hd-bench-") as tmp:
        workdir = Path(tmp)
        try:
            if "sink" in targets:
                results.append(run_target("sink", "sink", None, workdir, args, factory))
            for spec in (args.database_url or ["sqlite"]) if "gateway" in targets else []:
                dbdir = workdir / f"db-{len(databases)}"
                dbdir.mkdir()
                database = prepare_database(spec, dbdir)
                databases.append(database)
                name = f"gateway-{database.label}"
                result = run_target(name, "gateway", database, workdir, args, factory)
                result.rows = count_rows(database, dbdir)
                results.append(result)
        finally:
            for database in databases:
                for cleanup in database.cleanup:
                    cleanup()
    ok = report(results, args)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (OUT_DIR / f"intake-{stamp}.json").write_text(
        json.dumps(
            {
                "messages": args.messages,
                "connections": args.connections,
                "cpus": os.cpu_count(),
                "targets": [
                    {
                        "name": r.name,
                        "msgs_per_s": r.rate,
                        "p50_ms": r.load.percentile(0.5) * 1000,
                        "p99_ms": r.load.percentile(0.99) * 1000,
                        "peak_rss_kib": r.peak_rss_kib,
                        "server_cpu_s": r.server_cpu,
                        "client_cpu_s": r.load.client_cpu,
                        "accepted": r.load.accepted,
                        "refused": dict(r.load.refused),
                        "stats": r.stats,
                        "rows": r.rows,
                    }
                    for r in results
                ],
            },
            indent=2,
        )
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
