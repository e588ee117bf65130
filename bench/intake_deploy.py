"""What the intake benchmark runs against: helpdesk as a user runs it (``helpdesk serve``,
or ``helpdesk mailgate`` + ``helpdesk worker`` + ``helpdesk web``), a do-nothing
aiosmtpd sink, fresh databases, and a poller that sees tickets through the API."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
SECRET = "bench-secret-key-not-for-production"
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 60.0
SUBJECT_RE = re.compile(r"^Request (\d+)")
BENCH_USER = "bench@example.com"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def helpdesk_command() -> str:
    return str(Path(sys.executable).with_name("helpdesk"))


def wait_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


# --------------------------------------------------------------------------- processes


def _proc_stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _proc_stat(int(entry.name))):
            children.setdefault(int(stat[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cpu_seconds(pid: int) -> float:
    stat = _proc_stat(pid)
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK") if stat else 0.0


def peak_rss_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def role_of(pid: int) -> str:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    words = [w.decode(errors="replace") for w in cmdline if w]
    for role in ("mailgate", "worker", "web", "serve"):
        if role in words:
            return role
    pool = any("forkserver" in w or "multiprocessing" in w for w in words)
    return "parse pool" if pool else "other"


@dataclass
class Deployment:
    """helpdesk on a fresh database, started as a user starts it."""

    mode: str  # "serve" or "split"
    database_url: str
    workdir: Path
    relay: str
    procs: list[subprocess.Popen] = field(default_factory=list)  # type: ignore[type-arg]
    smtp_port: int = 0
    web_port: int = 0
    token: str = ""
    logs: list[Path] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_")}
        env.update(
            HELPDESK_DATABASE_URL=self.database_url,
            HELPDESK_SECRET_KEY=SECRET,
            HELPDESK_MAIL_DOMAIN="example.com",
            HELPDESK_SMTP_RELAY=self.relay,
            HELPDESK_INSTANCE_PATH=str(self.workdir / "instance"),
        )
        return env

    def cli(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [helpdesk_command(), *args], cwd=self.workdir, env=self.env, input=stdin,
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"helpdesk {' '.join(args)}: {done.stderr[-2000:]}")
        return done.stdout

    def _spawn(self, name: str, *args: str) -> None:
        log = self.workdir / f"{name}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [helpdesk_command(), *args], cwd=self.workdir, env=self.env,
                stdin=subprocess.DEVNULL, stdout=out, stderr=out,
            )  # fmt: skip
        self.procs.append(proc)

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.smtp_port, self.web_port = free_port(), free_port()
        smtp, web = f"{HOST}:{self.smtp_port}", f"{HOST}:{self.web_port}"
        if self.mode == "serve":
            self._spawn("serve", "serve", "--smtp", smtp, "--web", web)
        else:
            self.cli("init")
            self._spawn("mailgate", "mailgate", "--smtp", smtp)
            self._spawn("worker", "worker")
            self._spawn("web", "web", "--web", web)
        for port in (self.smtp_port, self.web_port):
            wait_port(port, READY_TIMEOUT, self.procs[0])
        self.cli("user", "add", BENCH_USER, "--role", "admin")
        self.token = self.cli("token", "create", BENCH_USER).strip()

    def pids(self) -> dict[str, list[int]]:
        """Process ids by role (mailgate, worker, web, serve, parse pool)."""
        roles: dict[str, list[int]] = {}
        for proc in self.procs:
            for pid in [proc.pid, *descendants(proc.pid)]:
                roles.setdefault(role_of(pid), []).append(pid)
        return roles

    def cpu(self) -> dict[str, float]:
        return {role: sum(map(cpu_seconds, pids)) for role, pids in self.pids().items()}

    def peak_rss_mib(self) -> dict[str, float]:
        return {
            role: max(map(peak_rss_kib, pids), default=0) / 1024
            for role, pids in self.pids().items()
        }

    def stop(self) -> list[int | None]:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes: list[int | None] = []
        for proc in self.procs:
            try:
                codes.append(proc.wait(STOP_TIMEOUT))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
                codes.append(None)
        return codes


# --------------------------------------------------------------------------- API


class ApiWatcher:
    """Polls the API's first page of tickets (newest first) and notes when each
    ``Request <n>`` ticket was first seen (monotonic time)."""

    def __init__(self, port: int, token: str, interval: float = 0.02) -> None:
        self.port, self.token, self.interval = port, token, interval
        self.seen: dict[int, float] = {}
        self.total = 0
        self.poll_seconds: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def get(self, path: str) -> dict:  # type: ignore[type-arg]
        conn = http.client.HTTPConnection(HOST, self.port, timeout=30)
        try:
            conn.request("GET", path, headers={"Authorization": f"Bearer {self.token}"})
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"GET {path}: {response.status} {body[:200]!r}")
            return json.loads(body)
        finally:
            conn.close()

    def poll(self) -> None:
        started = time.monotonic()
        page = self.get("/api/v1/tickets?status=any")
        now = time.monotonic()
        self.poll_seconds.append(now - started)
        self.total = page["total"]
        for ticket in page["tickets"]:
            match = SUBJECT_RE.match(ticket["subject"])
            if match:
                self.seen.setdefault(int(match.group(1)), now)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(Exception):
                self.poll()

    def __enter__(self) -> ApiWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def wait_total(self, expected: int, timeout: float) -> float | None:
        """Monotonic time when the API's total first reached ``expected``, or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.total >= expected:
                return time.monotonic()
            time.sleep(0.005)
        return None

    def wait_seen(self, index: int, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and index not in self.seen:
            time.sleep(0.005)
        return self.seen.get(index)


# --------------------------------------------------------------------------- databases


@dataclass
class Database:
    label: str
    url: str
    cleanup: list = field(default_factory=list)  # type: ignore[type-arg]


def new_database(spec: str, workdir: Path) -> Database:
    """A fresh empty database: a file for ``sqlite``, or a scratch database on a server."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from helpdesk import db

    if spec == "sqlite":
        workdir.mkdir(parents=True, exist_ok=True)
        return Database("sqlite", f"sqlite:///{workdir / 'instance' / 'helpdesk.db'}")
    url = make_url(db.normalise_url(spec))
    name = f"hd_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return Database("postgresql", url.set(database=name).render_as_string(False), [drop])


def postgres_reachable(spec: str) -> bool:
    from sqlalchemy import create_engine

    from helpdesk import db

    try:
        engine = create_engine(db.normalise_url(spec), connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


# --------------------------------------------------------------------------- sink


class SinkHandler:
    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        return "250 OK"


def run_sink() -> int:
    """Child process: a do-nothing aiosmtpd server until a line arrives on stdin."""
    from aiosmtpd.controller import Controller

    port = free_port()
    server = Controller(SinkHandler(), hostname=HOST, port=port, ready_timeout=READY_TIMEOUT)
    server.start()
    print(json.dumps({"port": port, "pid": os.getpid()}), flush=True)
    sys.stdin.readline()
    server.stop()
    return 0


@contextlib.contextmanager
def sink(script: Path):  # type: ignore[no-untyped-def]
    proc = subprocess.Popen(
        [sys.executable, str(script), "--sink"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdin is not None
    hello = json.loads(proc.stdout.readline())
    try:
        yield hello["port"], hello["pid"]
    finally:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write("stop\n")
            proc.stdin.flush()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
