"""Bounded parsing: every spooled message is read in a child process with a CPU limit.

The caps on the raw bytes (``helpdesk.mail.limits``) keep known bombs away
from the stdlib parser; this bounds whatever is left. Each message is read
by ``read_message`` in a pool of child processes (pebble, which kills and
replaces a worker whose task outlives its timeout): a worker's soft
``RLIMIT_CPU`` is set ``parse_timeout`` seconds past what it has used, and
the wall clock waits at most three times that. A message that hits either
limit, or crashes its worker, becomes an ``unparsed`` message read from its
header block alone. Parsing in children also lets it run on another core
while the applier writes the previous batch, and never inside a transaction.

``parse_workers = 0`` reads in the calling process, still capped but unbounded in time.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import resource
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from pebble import ProcessExpired, ProcessPool

from helpdesk.mail.inbound import InboundEmail
from helpdesk.mail.limits import Limits
from helpdesk.mail.parse import parse_headers_only, read_message
from helpdesk.settings import Settings

log = logging.getLogger(__name__)


def _read_limited(raw: bytes, limits: Limits, cpu_seconds: float) -> InboundEmail:
    """In the child: allow this task ``cpu_seconds`` of CPU beyond what the worker used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = math.ceil(used + cpu_seconds)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
    return read_message(raw, limits)


class Parser:
    """Reads raw messages into ``InboundEmail``; ``submit`` now, ``result`` later, in order."""

    def __init__(self, settings: Settings) -> None:
        self.limits = Limits.from_settings(settings)
        self.cpu_seconds = settings.parse_timeout
        self.wall_seconds = settings.parse_timeout * 3
        self.workers = settings.parse_workers
        self._pool: ProcessPool | None = None
        self._start_pool()

    def _start_pool(self) -> None:
        if self.workers > 0:
            context = multiprocessing.get_context("forkserver")
            self._pool = ProcessPool(max_workers=self.workers, context=context)

    def submit(self, raw: bytes) -> Future[InboundEmail]:
        if self._pool is None:
            done: Future[InboundEmail] = Future()
            try:
                done.set_result(read_message(raw, self.limits))
            except Exception as exc:  # read_message falls back by itself; belt and braces
                done.set_exception(exc)
            return done
        return self._pool.schedule(
            _read_limited, (raw, self.limits, self.cpu_seconds), timeout=self.wall_seconds
        )

    def result(self, future: Future[InboundEmail], raw: bytes) -> InboundEmail:
        """The parsed message; on a timeout or a dead worker, the header block alone."""
        try:
            # Tasks are awaited in order, so this one runs by now or right after the
            # one before it: twice the limit, plus room, unless the pool is wedged.
            return future.result(timeout=self.wall_seconds * 2 + 30)
        except (FutureTimeout, TimeoutError):
            reason = f"reading it took longer than {self.wall_seconds:g} s"
            if not future.done():
                log.error("the parser pool is stuck; starting a new one")
                self.close()
                self._start_pool()
        except ProcessExpired as exc:
            reason = f"reading it used more than {self.cpu_seconds:g} s of CPU or crashed"
            log.warning("parser worker ended (exit code %s)", exc.exitcode)
        except Exception as exc:
            reason = f"the parser failed: {type(exc).__name__}"
        log.warning("message read from its header block only: %s", reason)
        return parse_headers_only(raw, reason, self.limits)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.stop()  # type: ignore[no-untyped-call]  # pebble has no annotations here
            self._pool.join(timeout=10)
            self._pool = None
