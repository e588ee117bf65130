"""Child processes of ``helpdesk serve``: the gateway and the worker, one process each.

One Python process has one core to itself (the GIL); the gateway's SMTP
sessions and the applier's parsing and writing each want one, so ``serve``
runs ``helpdesk mailgate`` and ``helpdesk worker`` as children and the web
app in its own process. The children are supervised: one that dies is
started again (after a pause that grows while it keeps dying), SIGTERM
reaches every child and waits for it, and on Linux a child gets SIGTERM
when ``serve`` itself dies (``PR_SET_PDEATHSIG``), so none is left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    args: list[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    next_start: float | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "helpdesk", *self.args]
        preexec = _die_with_parent if sys.platform.startswith("linux") else None
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, preexec_fn=preexec)
        self.started_at = time.monotonic()
        self.next_start = None


class Supervisor:
    """Starts the children, restarts the ones that die, stops them all."""

    def __init__(self, children: list[Child]) -> None:
        self.children = children
        self._stopping = False

    def start(self) -> None:
        for child in self.children:
            child.start()

    def check(self) -> None:
        """Start again a child that died (call every second or so)."""
        now = time.monotonic()
        for child in self.children:
            if self._stopping or child.process is None or child.process.poll() is None:
                continue
            if child.next_start is None:
                quick = now - child.started_at < 60  # dying again and again: back off
                child.restarts = child.restarts + 1 if quick else 0
                child.next_start = now + min(30.0, 2.0 ** (child.restarts - 1) if quick else 0.0)
                log.error("%s exited with %s", child.name, child.process.returncode)
            if now >= child.next_start:
                log.info("starting %s again", child.name)
                child.start()

    def stop(self, timeout: float = 25.0) -> None:
        self._stopping = True
        running = [c.process for c in self.children if c.process and c.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("pid %s did not stop in time; killing it", process.pid)
                process.kill()
                process.wait(10)
