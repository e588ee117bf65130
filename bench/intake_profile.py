"""Profiling for the intake benchmark: py-spy attached to a process, and its samples
summed by step (parse, classify, thread, ticket writes, acknowledgement,
notifications, SLA, commit, ...), by layer and by function."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path


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
    """SIGINT makes py-spy write what it sampled and end."""
    for sig in (signal.SIGINT, signal.SIGKILL):
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

# "By step": the first rule (in this priority order) whose frame appears anywhere
# in the stack: which piece of the applier's (or the gateway's) work this time is for.
STEPS: tuple[Rule, ...] = (
    ("parse: waiting for the pool", ("result",), ("helpdesk/intake/parsing.py",)),
    ("waiting for the SQLite write lock", ("_begin_immediate",), ("helpdesk/db.py",)),
    ("read ahead (spooled rows)", ("_read_ahead",), ("helpdesk/intake/applier.py",)),
    ("lease", ("_hold", "renew", "acquire"), ("helpdesk/intake/",)),
    ("commit (COMMIT, fsync)", ("do_commit",), ()),
    # The lifecycle's subscribers (helpdesk.subscribers), run when a change is published.
    ("acknowledgement", ("__call__", "acknowledge"), ("helpdesk/outbound/acknowledgement.py",)),
    ("notifications", ("__call__", "notify"), ("helpdesk/outbound/notifications.py",)),
    ("SLA", ("__call__", "refresh", "refresh_with_result"), ("helpdesk/sla/",)),
    ("classify", ("classify",), ("helpdesk/mail/classify.py",)),
    ("thread (find the ticket)", ("find_ticket",), ("helpdesk/intake/threads.py",)),
    ("duplicate check", ("applied_by_key", "_find_duplicate"), ("helpdesk/intake/receive.py",)),
    ("batch facts (agents, members, policies)", ("preload",), ("helpdesk/tickets/facts.py",)),
    ("ticket writes (ticket, contact, message, CCs)", ("_new_ticket", "_follow_up"), ("",)),
    ("other apply", ("apply", "apply_spooled", "_apply"), ("helpdesk/intake/",)),
    ("spool (gateway)", ("spool", "_transaction"), ("helpdesk/intake/spool.py", "mailgate/")),
    ("SMTP protocol (gateway)", ("",), ("aiosmtpd/", "mailgate/server.py")),
    ("SQLAlchemy", ("",), ("sqlalchemy/",)),
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
        ("select", "wait", "get", "readline", "_worker", "poll", "notifies", "sleep"),
        ("selectors.py", "threading.py", "queue.py", "concurrent/futures/", "psycopg/", "time"),
    ),
    ("idle", ("_run",), ("mailgate/committer.py",)),  # blocked in SimpleQueue.get (C)
    ("idle", ("_watch_sqlite", "_listen"), ("helpdesk/intake/wakeup.py",)),
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
    for marker in ("site-packages/", "python3.11/", "helpdesk/", "mailgate/"):
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
